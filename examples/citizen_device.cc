// A citizen's device for the demo and the tests: enrols, logs in and signs statements over the portal's HTTP calls.
#include "examples/citizen_device.h"

#include <httplib.h>

#include "crypto/primitives.h"

namespace kring {

using nlohmann::json;

CitizenDevice::CitizenDevice(int portal_port) : port_(portal_port) {
  InitSodium();
  crypto_sign_keypair(pk_.data(), sk_.data());
}

std::string CitizenDevice::SignText(const std::string& text) const {
  Signature sig = SignPure(ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()), sk_);
  return ToHex(sig);
}

HttpReply CitizenDevice::Send(const std::string& method, const std::string& path, const std::string& body) {
  httplib::Client cli("http://127.0.0.1:" + std::to_string(port_));
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(10, 0);
  httplib::Headers h;
  if (!cookie_.empty()) h.emplace("Cookie", "kring_sessie=" + cookie_);
  httplib::Result res = method == "POST" ? cli.Post(path, h, body, "application/json") : cli.Get(path, h);
  HttpReply r;
  if (!res) return r;
  r.status = res->status;
  r.raw = res->body;
  r.body = json::parse(res->body, nullptr, false);
  std::string set = res->get_header_value("Set-Cookie");
  const std::string name = "kring_sessie=";
  if (set.rfind(name, 0) == 0) {
    set_cookie_ = set;
    cookie_ = set.substr(name.size(), set.find(';') - name.size());
  }
  return r;
}

HttpReply CitizenDevice::Get(const std::string& path) { return Send("GET", path, ""); }
HttpReply CitizenDevice::Post(const std::string& path, const json& body) { return Send("POST", path, body.dump()); }

HttpReply CitizenDevice::Enrol(const std::string& code) {
  HttpReply offer = Post("/api/code", {{"code", code}});
  if (offer.status != 200) return offer;
  std::string statement = "kring burgerverklaring v1\nhandeling: sleutel koppelen\nzaak: " +
                          offer.body["zaak"].get<std::string>() + "\nuitnodiging: " +
                          offer.body["uitnodiging"].get<std::string>() + "\nsleutel: " + ToHex(pk_) + "\n";
  HttpReply done = Post("/api/koppelen", {{"code", code}, {"sleutel", ToHex(pk_)}, {"handtekening", SignText(statement)}});
  if (done.status == 201) {
    case_id_ = done.body["zaak"].get<std::string>();
    key_id_ = done.body["sleutel"].get<std::string>();
  }
  return done;
}

HttpReply CitizenDevice::Login() {
  HttpReply challenge = Get("/api/uitdaging");
  if (challenge.status != 200) return challenge;
  std::string c = challenge.body["uitdaging"].get<std::string>();
  std::string text = "kring burgerverklaring v1\nhandeling: inloggen\norganisatie: " +
                     challenge.body["organisatie"].get<std::string>() + "\nuitdaging: " + c + "\n";
  return Post("/api/inloggen", {{"zaak", case_id_}, {"sleutel", key_id_}, {"uitdaging", c}, {"handtekening", SignText(text)}});
}

HttpReply CitizenDevice::SignDraft(const std::string& draft_path, const json& body) {
  return SignDraftWith(*this, draft_path, body);
}

HttpReply CitizenDevice::SignDraftWith(const CitizenDevice& signer, const std::string& draft_path, const json& body) {
  HttpReply draft = Post(draft_path, body);
  if (draft.status != 200) return draft;
  return Post("/api/ondertekenen", {{"concept", draft.body["concept"]},
                                    {"handtekening", signer.SignText(draft.body["verklaring"].get<std::string>())}});
}

}  // namespace kring
