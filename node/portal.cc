// The citizen's portal: static pages compiled into the binary, sessions started by a signed challenge, and the JSON calls the pages make.
#include "node/portal.h"

#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unistd.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "crypto/primitives.h"
#include "node/api_listener.h"
#include "node/log.h"
#include "node/node.h"
#include "node/portal_assets.h"

namespace kring {

using nlohmann::json;

namespace {

constexpr const char* kCookie = "kring_sessie";
// What a portal request may carry: a form's worth of JSON.
constexpr size_t kMaxPortalBodyBytes = 16 * 1024;

// The pages of the portal: path, title, and whether a session is needed.
struct Page {
  const char* path;
  const char* id;
  const char* title;
};
constexpr Page kPages[] = {
    {"/", "start", "Welkom"},
    {"/mijn-plan", "plan", "Mijn plan"},
    {"/wie-mag-wat-zien", "toegang", "Wie mag wat zien"},
    {"/wie-heeft-gekeken", "gekeken", "Wie heeft gekeken"},
    {"/alles-downloaden", "downloaden", "Alles downloaden"},
};

ByteSpan AsBytes(std::string_view s) { return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

std::string IsoTime(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// "YYYY-MM-DD" as Unix ms at the end of that day (UTC): "until" includes the day.
std::optional<int64_t> EndOfDay(const std::string& s) {
  int y, m, d, n = 0;
  if (s.size() != 10 || std::sscanf(s.c_str(), "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10) return std::nullopt;
  if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  std::time_t t = timegm(&tm);
  if (t < 0 || tm.tm_mday != d) return std::nullopt;
  return static_cast<int64_t>(t) * 1000 + 24LL * 3600 * 1000 - 1;
}

// What a device signs to start a session: bound to this node and a fresh challenge.
std::string LoginStatement(const std::string& org, const std::string& challenge_hex) {
  return "kring burgerverklaring v1\nhandeling: inloggen\norganisatie: " + org + "\nuitdaging: " + challenge_hex + "\n";
}

json DomainsOf(const ConsentGrant& g) {
  json d = json::array();
  for (const auto& x : g.domains.v) d.push_back(x.v);
  return d;
}

}  // namespace

struct PortalServer::Impl {
  Node* node;
  std::unique_ptr<httplib::Server> server;
  ApiListener* listener = nullptr;  // the server, as our listener
  std::thread thread;
  bool tls = false;

  struct Session {
    CaseId case_id{};
    RecordId key{};
    int64_t last_ms = 0;
    std::map<std::string, ControlRecord> drafts;  // by draft id, until signed
  };
  std::mutex mu;  // guards the maps below
  std::map<std::string, Session> sessions;            // by cookie value
  std::map<std::string, int64_t> challenges;           // hex -> issued
  std::map<std::string, std::deque<int64_t>> wrong;    // client address -> times of wrong codes

  explicit Impl(Node* n) : node(n) {}

  static int64_t Now() { return static_cast<int64_t>(HybridClock::SystemMillis()); }

  static void Send(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json; charset=utf-8");
  }
  // `bericht` is what the citizen reads: Dutch, B1.
  static void Fail(httplib::Response& res, int status, const std::string& code, const std::string& bericht) {
    Send(res, status, {{"fout", code}, {"bericht", bericht}});
  }

  std::optional<json> Body(const httplib::Request& req, httplib::Response& res) {
    std::string type = req.get_header_value("Content-Type");
    if (type.rfind("application/json", 0) != 0) {
      Fail(res, 415, "geen_json", "Er ging iets mis. Laad de pagina opnieuw.");
      return std::nullopt;
    }
    if (req.body.size() > kMaxPortalBodyBytes) {
      Fail(res, 413, "te_groot", "U stuurde te veel tekst. Maak het korter.");
      return std::nullopt;
    }
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      Fail(res, 400, "geen_json", "Er ging iets mis. Laad de pagina opnieuw.");
      return std::nullopt;
    }
    return j;
  }

  static std::string Str(const json& j, const char* name) {
    auto it = j.find(name);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  }

  std::string CookieOf(const httplib::Request& req) {
    std::string all = req.get_header_value("Cookie");
    std::string want = std::string(kCookie) + "=";
    for (size_t at = 0; at < all.size();) {
      size_t end = all.find(';', at);
      std::string part = all.substr(at, end == std::string::npos ? std::string::npos : end - at);
      while (!part.empty() && part.front() == ' ') part.erase(0, 1);
      if (part.rfind(want, 0) == 0) return part.substr(want.size());
      if (end == std::string::npos) break;
      at = end + 1;
    }
    return "";
  }

  // The session of this request, if any and still fresh; refreshes it.
  std::optional<Session> SessionOf(const httplib::Request& req) {
    std::string token = CookieOf(req);
    if (token.empty()) return std::nullopt;
    std::lock_guard lock(mu);
    auto it = sessions.find(token);
    if (it == sessions.end()) return std::nullopt;
    const int64_t now = Now();
    if (now - it->second.last_ms > kPortalSessionIdleMs) {
      sessions.erase(it);
      return std::nullopt;
    }
    it->second.last_ms = now;
    return it->second;
  }

  // Checks that the session's key is still enrolled (a revoked phone loses its session at once).
  std::optional<Session> Citizen(const httplib::Request& req, httplib::Response& res) {
    auto s = SessionOf(req);
    if (s) {
      auto state = node->State(s->case_id);
      if (state.ok())
        for (const CitizenKeyView& k : state->CitizenKeys())
          if (k.id == s->key && !k.revoked_by) return s;
    }
    Fail(res, 401, "geen_sessie", "U bent niet (meer) ingelogd. Ga naar de startpagina.");
    return std::nullopt;
  }

  void StartSession(httplib::Response& res, const CaseId& case_id, const RecordId& key) {
    std::array<uint8_t, 32> raw;
    RandomBytes(raw);
    std::string token = ToHex(raw);
    sodium_memzero(raw.data(), raw.size());
    {
      std::lock_guard lock(mu);
      // Drop stale sessions as new ones start: the map stays bounded by the active ones.
      const int64_t now = Now();
      for (auto it = sessions.begin(); it != sessions.end();)
        it = now - it->second.last_ms > kPortalSessionIdleMs ? sessions.erase(it) : std::next(it);
      sessions[token] = Session{case_id, key, now, {}};
    }
    res.set_header("Set-Cookie", std::string(kCookie) + "=" + token + "; Path=/; HttpOnly; SameSite=Strict" +
                                     (tls ? "; Secure" : ""));
  }

  // Too many wrong codes from this address in the last minute.
  bool Throttled(const std::string& addr) {
    std::lock_guard lock(mu);
    auto& times = wrong[addr];
    const int64_t now = Now();
    while (!times.empty() && now - times.front() > 60 * 1000) times.pop_front();
    if (times.empty()) {
      wrong.erase(addr);  // `times` is gone with it: not read below
      return false;
    }
    return times.size() >= static_cast<size_t>(kMaxWrongCodesPerMinute);
  }
  void CountWrongCode(const std::string& addr) {
    std::lock_guard lock(mu);
    if (wrong.size() > 10000) wrong.clear();  // bounded: a flood of addresses forgets, it does not grow
    wrong[addr].push_back(Now());
  }

  void Reject(const char* reason, const std::string& detail) {
    node->CountCitizenRejection(reason);
    KRING_LOG(kWarn, "portal", reason << ": " << detail);
  }

  // A code problem in the citizen's words; counts it as a wrong attempt.
  void CodeFailed(const httplib::Request& req, httplib::Response& res, const Status& st) {
    CountWrongCode(req.remote_addr);
    switch (st.code()) {
      case Status::Code::kAlreadyExists:
        Reject("invitation_used", "an enrolment code was used again");
        return Fail(res, 409, "code_gebruikt", "Deze code is al gebruikt. Vraag uw regisseur om een nieuwe code.");
      case Status::Code::kPermissionDenied:
        Reject("invitation_expired", "an expired enrolment code");
        return Fail(res, 410, "code_verlopen", "Deze code is niet meer geldig. Vraag uw regisseur om een nieuwe code.");
      case Status::Code::kUnauthenticated:
        Reject("citizen_signature", "an enrolment whose proof of possession does not verify");
        return Fail(res, 400, "handtekening_fout", "Uw apparaat kon de code niet bevestigen. Probeer het opnieuw.");
      default:
        Reject("invitation_unknown", "an unknown enrolment code");
        return Fail(res, 404, "code_onbekend", "Deze code kennen wij niet. Kijk of u de code goed heeft overgetypt.");
    }
  }

  // Writes the access-log entry for what the citizen did here.
  void Log(const Session& s, const char* action, std::vector<std::string> items, bool ok) {
    AccessEntry e;
    RandomBytes(e.event_id);
    e.time_ms = Now();
    e.action = action;
    e.outcome = ok ? "success" : "failure";
    e.actor_id = "burger:" + ToHex(s.key).substr(0, 16);
    e.actor_name = "Burger";
    e.actor_role = "burger";
    e.organisation = node->identity().org;
    e.client_system = "portaal";
    e.case_id = s.case_id;
    e.items = std::move(items);
    Status st = node->AppendAccess(&e);
    if (!st.ok()) KRING_LOG(kError, "audit", "cannot write the access log: " << st.ToString());
  }

  json Names() {
    json names = json::object();
    names[node->identity().org] = node->identity().display_name;
    auto partners = node->store().ListPartners();
    if (partners.ok())
      for (const Partner& p : *partners) names[p.identity.org] = p.identity.display_name;
    return names;
  }

  json ConsentsJson(const CaseState& state) {
    json list = json::array();
    for (const ConsentView& v : state.Consents(Now())) {
      const ConsentGrant& g = *v.grant;
      list.push_back({{"id", ToHex(v.id)}, {"organisatie", g.grantee.v}, {"levensgebieden", DomainsOf(g)},
                      {"doel", g.purpose.v}, {"grondslag", g.basis.v}, {"vanaf", IsoTime(g.valid_from_ms)},
                      {"tot", g.valid_until_ms ? json(IsoTime(g.valid_until_ms)) : json(nullptr)},
                      {"status", ConsentStatusName(v.status)},
                      {"door_burger_ondertekend", g.evidence_kind == kEvidenceCitizenSigned}});
    }
    return list;
  }

  // A draft kept in the session until the citizen's device signs it.
  std::string KeepDraft(const httplib::Request& req, ControlRecord draft) {
    std::array<uint8_t, 16> raw;
    RandomBytes(raw);
    std::string id = ToHex(raw);
    std::lock_guard lock(mu);
    auto it = sessions.find(CookieOf(req));
    if (it == sessions.end()) return "";
    if (it->second.drafts.size() >= 8) it->second.drafts.clear();  // bounded: an abandoned form is forgotten
    it->second.drafts.emplace(id, std::move(draft));
    return id;
  }

  void SendDraft(const httplib::Request& req, httplib::Response& res, Result<ControlRecord> draft) {
    if (!draft.ok()) {
      if (draft.status().code() == Status::Code::kInvalidArgument)
        return Fail(res, 400, "ongeldig", "Vul alles goed in: " + draft.status().message());
      if (draft.status().code() == Status::Code::kConflict)
        return Fail(res, 409, "al_ingetrokken", "Deze toestemming is al ingetrokken.");
      return Fail(res, 403, "niet_toegestaan", "Dit kan hier niet. Neem contact op met uw regisseur.");
    }
    auto statement = CitizenStatement(*draft);
    if (!statement.ok()) return Fail(res, 500, "intern", "Er ging iets mis. Probeer het later opnieuw.");
    std::string id = KeepDraft(req, *draft);
    Send(res, 200, {{"concept", id}, {"verklaring", *statement}});
  }

  void ServePage(const Page& page, const httplib::Request& req, httplib::Response& res) {
    bool session = SessionOf(req).has_value();
    if (std::string_view(page.id) != "start" && !session) {
      res.status = 303;
      res.set_header("Location", "/");
      return;
    }
    std::string html = kPortalPageHtml;
    auto put = [&](std::string_view key, const std::string& value) {
      for (size_t at; (at = html.find(key)) != std::string::npos;) html.replace(at, key.size(), value);
    };
    put("%PAGINA%", page.id);
    put("%TITEL%", page.title);
    res.set_content(html, "text/html; charset=utf-8");
  }

  void Routes();
};

void PortalServer::Impl::Routes() {
  for (const Page& page : kPages)
    server->Get(page.path, [this, &page](const httplib::Request& req, httplib::Response& res) { ServePage(page, req, res); });
  server->Get("/portaal.js", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kPortalScriptJs, "text/javascript; charset=utf-8");
  });
  server->Get("/portaal.css", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kPortalStyleCss, "text/css; charset=utf-8");
  });

  // Step 1 of enrolment: is this code good? Tells the device what to sign.
  server->Post("/api/code", [this](const httplib::Request& req, httplib::Response& res) {
    if (Throttled(req.remote_addr))
      return Fail(res, 429, "wachten", "U heeft te vaak een verkeerde code ingevuld. Wacht een minuut en probeer het dan opnieuw.");
    auto body = Body(req, res);
    if (!body) return;
    auto offer = node->CheckInvitation(Str(*body, "code"));
    if (!offer.ok()) return CodeFailed(req, res, offer.status());
    Send(res, 200, {{"zaak", CaseIdToHex(offer->case_id)}, {"uitnodiging", ToHex(offer->invitation)}});
  });

  // Step 2: the device's public key and its signature over the enrolment statement.
  server->Post("/api/koppelen", [this](const httplib::Request& req, httplib::Response& res) {
    if (Throttled(req.remote_addr))
      return Fail(res, 429, "wachten", "U heeft te vaak een verkeerde code ingevuld. Wacht een minuut en probeer het dan opnieuw.");
    auto body = Body(req, res);
    if (!body) return;
    SignPublicKey pk{};
    Signature sig{};
    if (!FromHex(Str(*body, "sleutel"), pk) || !FromHex(Str(*body, "handtekening"), sig))
      return CodeFailed(req, res, Status::Unauthenticated("malformed key or signature"));
    CaseId case_id{};
    auto key = node->EnrolCitizen(Str(*body, "code"), pk, sig, &case_id);
    if (!key.ok()) {
      if (key.status().code() == Status::Code::kPermissionDenied &&
          key.status().message().find("expired") == std::string::npos)
        return Fail(res, 403, "niet_toegestaan", "Dit kan hier niet. Neem contact op met uw regisseur.");
      return CodeFailed(req, res, key.status());
    }
    StartSession(res, case_id, *key);
    Session s{case_id, *key, Now(), {}};
    Log(s, "create", {"citizen-key:" + ToHex(*key)}, true);
    Send(res, 201, {{"zaak", CaseIdToHex(case_id)}, {"sleutel", ToHex(*key)}});
  });

  server->Get("/api/uitdaging", [this](const httplib::Request&, httplib::Response& res) {
    std::array<uint8_t, 32> raw;
    RandomBytes(raw);
    std::string hex = ToHex(raw);
    {
      std::lock_guard lock(mu);
      const int64_t now = Now();
      for (auto it = challenges.begin(); it != challenges.end();)
        it = now - it->second > kPortalChallengeMs ? challenges.erase(it) : std::next(it);
      if (challenges.size() > 10000) challenges.clear();
      challenges[hex] = now;
    }
    Send(res, 200, {{"uitdaging", hex}, {"organisatie", node->identity().org}});
  });

  server->Post("/api/inloggen", [this](const httplib::Request& req, httplib::Response& res) {
    auto body = Body(req, res);
    if (!body) return;
    std::string challenge = Str(*body, "uitdaging");
    {
      std::lock_guard lock(mu);
      auto it = challenges.find(challenge);
      bool fresh = it != challenges.end() && Now() - it->second <= kPortalChallengeMs;
      if (it != challenges.end()) challenges.erase(it);  // once
      if (!fresh) return Fail(res, 400, "uitdaging_verlopen", "Het inloggen duurde te lang. Probeer het opnieuw.");
    }
    CaseId case_id{};
    RecordId key{};
    Signature sig{};
    if (!CaseIdFromHex(Str(*body, "zaak"), &case_id) || !FromHex(Str(*body, "sleutel"), key) ||
        !FromHex(Str(*body, "handtekening"), sig)) {
      Reject("citizen_signature", "a login with a malformed key or signature");
      return Fail(res, 401, "niet_herkend", "Wij herkennen dit apparaat niet. Vraag uw regisseur om een nieuwe code.");
    }
    auto state = node->State(case_id);
    std::optional<CitizenKeyView> found;
    if (state.ok())
      for (const CitizenKeyView& k : state->CitizenKeys())
        if (k.id == key && !k.revoked_by) found = k;
    std::string statement = LoginStatement(node->identity().org, challenge);
    if (!found || !VerifyPure(AsBytes(statement), sig, found->key)) {
      Reject("citizen_signature", "a login signature by no enrolled key of the case");
      return Fail(res, 401, "niet_herkend", "Wij herkennen dit apparaat niet. Vraag uw regisseur om een nieuwe code.");
    }
    StartSession(res, case_id, key);
    Send(res, 200, {{"zaak", CaseIdToHex(case_id)}, {"sleutel", ToHex(key)}});
  });

  server->Post("/api/uitloggen", [this](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard lock(mu);
      sessions.erase(CookieOf(req));
    }
    res.set_header("Set-Cookie", std::string(kCookie) + "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + (tls ? "; Secure" : ""));
    Send(res, 200, {{"uitgelogd", true}});
  });

  server->Get("/api/ik", [this](const httplib::Request& req, httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    Send(res, 200, {{"zaak", CaseIdToHex(s->case_id)}, {"sleutel", ToHex(s->key)},
                    {"organisatie", node->identity().org}, {"namen", Names()}});
  });

  server->Get("/api/plan", [this](const httplib::Request& req, httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    auto plan = node->ReadPlan(s->case_id);
    Log(*s, "read", plan.ok() ? plan->versions : std::vector<std::string>{}, plan.ok());
    if (!plan.ok()) return Fail(res, 500, "intern", "Uw plan kan nu niet worden getoond. Probeer het later opnieuw.");
    // The citizen's erasure requests and the answers this node holds (all of
    // them at the regie organisation's node), in the page's words.
    json verzoeken = json::array();
    if (auto status = node->ErasureStatus(s->case_id); status.ok())
      for (const json& r : (*status)["requests"]) {
        json antwoorden = json::array();
        for (const json& a : r["answers"])
          antwoorden.push_back({{"organisatie", a["organisation"]}, {"gewist", a["erased"]}, {"bewaard", a["kept"]},
                                {"regel", a["rule"]}, {"tijd", a["answered"]}});
        verzoeken.push_back({{"vastgelegd", r["recorded"]}, {"antwoorden", antwoorden},
                             {"wacht_op", r.value("waiting_for", json::array())}});
      }
    Send(res, 200, {{"plan", plan->plan}, {"namen", Names()}, {"verwijderverzoeken", verzoeken}});
  });

  server->Get("/api/toestemmingen", [this](const httplib::Request& req, httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    auto state = node->State(s->case_id);
    if (!state.ok()) return Fail(res, 500, "intern", "Dit kan nu niet worden getoond. Probeer het later opnieuw.");
    json orgs = json::array();
    auto partners = node->store().ListPartners();
    if (partners.ok())
      for (const Partner& p : *partners) orgs.push_back({{"org", p.identity.org}, {"naam", p.identity.display_name}});
    json consents = ConsentsJson(*state);
    std::vector<std::string> items;
    for (const json& c : consents) items.push_back(c["id"].get<std::string>());
    Log(*s, "read", items, true);
    Send(res, 200, {{"toestemmingen", consents}, {"organisaties", orgs}, {"namen", Names()},
                    {"regie", state->Regie().org}, {"mag_geven", state->Regie().org == node->identity().org}});
  });

  server->Post("/api/toestemmingen/concept", [this](const httplib::Request& req, httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    auto body = Body(req, res);
    if (!body) return;
    ConsentInput in;
    in.grantee = Str(*body, "organisatie");
    in.purpose = Str(*body, "doel");
    if (in.purpose.empty() || in.purpose.size() > kMaxPurposeBytes)
      return Fail(res, 400, "doel", "Schrijf op waarvoor de organisatie uw gegevens mag gebruiken.");
    in.basis = "toestemming van de burger (AVG art. 6 lid 1 a, art. 9 lid 2 a)";
    in.given_by = "burger";
    in.evidence_reference = "portaal";
    in.valid_from_ms = Now() - 1000;
    if (std::string until = Str(*body, "tot"); !until.empty()) {
      auto t = EndOfDay(until);
      if (!t || *t <= in.valid_from_ms) return Fail(res, 400, "datum", "Kies een datum in de toekomst, of laat de datum leeg.");
      in.valid_until_ms = *t;
    }
    auto domains = body->find("levensgebieden");
    if (domains == body->end() || !domains->is_array() || domains->empty() || domains->size() > kMaxConsentDomains)
      return Fail(res, 400, "levensgebieden", "Kies minstens één levensgebied.");
    for (const json& d : *domains)
      if (d.is_string()) in.domains.push_back(d.get<std::string>());
    SendDraft(req, res, node->DraftCitizenGrant(s->case_id, s->key, in));
  });

  server->Post(R"(/api/toestemmingen/([0-9a-f]{64})/intrekken/concept)", [this](const httplib::Request& req,
                                                                               httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    RecordId consent{};
    if (!FromHex(std::string(req.matches[1]), consent)) return Fail(res, 404, "onbekend", "Deze toestemming bestaat niet.");
    auto draft = node->DraftCitizenWithdrawal(s->case_id, s->key, consent);
    if (!draft.ok() && draft.status().code() == Status::Code::kNotFound)
      return Fail(res, 404, "onbekend", "Deze toestemming bestaat niet.");
    SendDraft(req, res, std::move(draft));
  });

  // The citizen's enrolled devices, and turning one off (a lost phone) with a signature from this one.
  server->Get("/api/apparaten", [this](const httplib::Request& req, httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    auto state = node->State(s->case_id);
    if (!state.ok()) return Fail(res, 500, "intern", "Dit kan nu niet worden getoond. Probeer het later opnieuw.");
    json list = json::array();
    for (const CitizenKeyView& k : state->CitizenKeys())
      list.push_back({{"id", ToHex(k.id)}, {"gekoppeld", IsoTime(k.enrolled_ms)}, {"dit_apparaat", k.id == s->key},
                      {"uitgezet", k.revoked_by.has_value()}});
    Send(res, 200, {{"apparaten", list}});
  });

  server->Post(R"(/api/apparaten/([0-9a-f]{64})/uitzetten/concept)", [this](const httplib::Request& req,
                                                                           httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    RecordId revoked{};
    if (!FromHex(std::string(req.matches[1]), revoked)) return Fail(res, 404, "onbekend", "Dit apparaat kennen wij niet.");
    auto state = node->State(s->case_id);
    bool known = false;
    if (state.ok())
      for (const CitizenKeyView& k : state->CitizenKeys()) known = known || (k.id == revoked && !k.revoked_by);
    if (!known) return Fail(res, 404, "onbekend", "Dit apparaat kennen wij niet, of het staat al uit.");
    SendDraft(req, res, node->DraftCitizenKeyRevocation(s->case_id, s->key, revoked));
  });

  // The device's signature over a draft's statement: the node signs the record as its author and stores it.
  server->Post("/api/ondertekenen", [this](const httplib::Request& req, httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    auto body = Body(req, res);
    if (!body) return;
    Signature sig{};
    if (!FromHex(Str(*body, "handtekening"), sig)) {
      Reject("citizen_signature", "a malformed signature");
      return Fail(res, 400, "handtekening_fout", "Uw apparaat kon dit niet ondertekenen. Probeer het opnieuw.");
    }
    std::optional<ControlRecord> draft;
    {
      std::lock_guard lock(mu);
      auto it = sessions.find(CookieOf(req));
      if (it != sessions.end()) {
        auto d = it->second.drafts.find(Str(*body, "concept"));
        if (d != it->second.drafts.end()) {
          draft = std::move(d->second);
          it->second.drafts.erase(d);
        }
      }
    }
    if (!draft) return Fail(res, 409, "concept_weg", "Dit verzoek is verlopen. Probeer het opnieuw.");
    const bool withdrawal = std::holds_alternative<ConsentWithdrawal>(draft->body);
    const bool revocation = std::holds_alternative<CitizenKeyRevocation>(draft->body);
    const char* action = withdrawal ? "consent-withdraw" : revocation ? "update" : "consent-record";
    auto id = node->CommitCitizenRecord(s->case_id, std::move(*draft), sig);
    if (!id.ok()) {
      Log(*s, action, {}, false);
      const std::string& m = id.status().message();
      if (m.find("signature") != std::string::npos) {
        Reject("citizen_signature", m);
        return Fail(res, 403, "handtekening_fout", "De handtekening klopt niet. Er is niets veranderd.");
      }
      if (m.find("another moment") != std::string::npos || id.status().code() == Status::Code::kPermissionDenied)
        return Fail(res, 409, "veranderd", "Er is net iets veranderd in uw dossier. Probeer het opnieuw.");
      return Fail(res, 500, "intern", "Er ging iets mis. Er is niets veranderd. Probeer het later opnieuw.");
    }
    Log(*s, action, {ToHex(*id)}, true);
    Send(res, 201, {{"record", ToHex(*id)}});
  });

  server->Get("/api/logboek", [this](const httplib::Request& req, httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    auto entries = node->AccessLogOf(s->case_id, 0, std::numeric_limits<int64_t>::max());
    if (!entries.ok()) return Fail(res, 500, "intern", "Het logboek kan nu niet worden getoond. Probeer het later opnieuw.");
    json list = json::array();
    for (const AccessEntry& e : *entries)
      list.push_back({{"tijd", IsoTime(e.time_ms)}, {"handeling", e.action}, {"uitkomst", e.outcome},
                      {"wie", e.actor_name}, {"rol", e.actor_role}, {"namens", e.on_behalf_of},
                      {"organisatie", e.organisation}, {"systeem", e.client_system}, {"aantal", e.items.size()}});
    Log(*s, "read", {"access-log"}, true);
    Send(res, 200, {{"regels", list}, {"namen", Names()}});
  });

  // Everything about the household in one file (AVG art. 15 and 20).
  server->Get("/api/download", [this](const httplib::Request& req, httplib::Response& res) {
    auto s = Citizen(req, res);
    if (!s) return;
    auto plan = node->ReadPlan(s->case_id);
    auto state = node->State(s->case_id);
    auto entries = node->AccessLogOf(s->case_id, 0, std::numeric_limits<int64_t>::max());
    if (!plan.ok() || !state.ok() || !entries.ok()) {
      Log(*s, "export", {}, false);
      return Fail(res, 500, "intern", "Het downloaden lukt nu niet. Probeer het later opnieuw.");
    }
    json log = json::array();
    for (const AccessEntry& e : *entries)
      log.push_back({{"tijd", IsoTime(e.time_ms)}, {"handeling", e.action}, {"uitkomst", e.outcome},
                     {"wie", e.actor_name}, {"rol", e.actor_role}, {"namens", e.on_behalf_of},
                     {"organisatie", e.organisation}, {"systeem", e.client_system}, {"onderdelen", e.items}});
    Log(*s, "export", plan->versions, true);
    json all = {{"zaak", CaseIdToHex(s->case_id)}, {"gemaakt", IsoTime(Now())}, {"door", node->identity().org},
                {"plan", plan->plan}, {"toestemmingen", ConsentsJson(*state)}, {"logboek", log}, {"namen", Names()}};
    res.set_header("Content-Disposition", "attachment; filename=\"mijn-gegevens.json\"");
    Send(res, 200, all);
  });

  server->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (req.path.rfind("/api/", 0) == 0) return Fail(res, res.status, "fout", "Er ging iets mis.");
    res.set_content("<!doctype html><html lang=\"nl\"><head><meta charset=\"utf-8\"><title>Niet gevonden</title></head>"
                    "<body><main><h1>Deze pagina bestaat niet</h1><p><a href=\"/\">Naar de startpagina</a></p></main></body></html>",
                    "text/html; charset=utf-8");
  });
  server->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    KRING_LOG(kError, "portal", "request failed");
    Fail(res, 500, "intern", "Er ging iets mis. Probeer het later opnieuw.");
  });
}

PortalServer::PortalServer(Node* node) : impl_(std::make_unique<Impl>(node)) {}
PortalServer::~PortalServer() { Stop(); }

Status PortalServer::Start(const ApiOptions& options) {
  const bool tls = !options.tls_cert.empty() || !options.tls_key.empty();
  // The same listener as the API: a request must arrive whole within its
  // deadline, connections are capped, and slow clients cannot hold workers.
  auto listener = NewListener(options, "the portal");
  if (!listener.ok()) return listener.status();
  impl_->listener = listener->get();
  impl_->server = std::move(*listener);
  impl_->tls = tls;
  httplib::Server& server = *impl_->server;
  server.set_payload_max_length(kMaxPortalBodyBytes);
  server.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("Cache-Control", "no-store");
  });
  impl_->Routes();
  if (!server.bind_to_port(options.host, options.port))
    return Status::IOError("cannot bind the portal to " + options.host + ":" + std::to_string(options.port) + " (in use?)");
  impl_->listener->RaiseListenBacklog(SOMAXCONN);
  impl_->thread = std::thread([this] { impl_->server->listen_after_bind(); });
  return Status::Ok();
}

bool PortalServer::tls() const { return impl_->tls; }

void PortalServer::Stop() {
  if (impl_->thread.joinable()) {
    impl_->server->stop();
    impl_->thread.join();
  }
  if (impl_->listener) impl_->listener->Shutdown();
}

}  // namespace kring
