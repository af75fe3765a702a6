// HTTP routes of the local API: authentication, actor headers, JSON errors, cases and fragments.
#include "node/api.h"

#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "crypto/primitives.h"
#include "node/log.h"
#include "node/node.h"

namespace kring {

using nlohmann::json;

std::string NewApiToken() {
  std::array<uint8_t, 32> raw;
  RandomBytes(raw);
  std::string token = "krt_" + ToHex(raw);
  sodium_memzero(raw.data(), raw.size());
  return token;
}

Hash HashApiToken(std::string_view token) {
  return HashParts("kring/api-token/v1", {ByteSpan(reinterpret_cast<const uint8_t*>(token.data()), token.size())});
}

namespace {

// The person a client system acts for in one call (from the X-Kring-* headers).
struct Caller {
  std::string client;  // the client system's token name
  std::string actor;
  std::string actor_name;
  std::string role;
  std::string on_behalf_of;
};

void SendError(httplib::Response& res, int status, const std::string& code, const std::string& message) {
  res.status = status;
  res.set_content(json{{"error", code}, {"message", message}}.dump(), "application/json");
}

void SendStatusError(httplib::Response& res, const Status& st) {
  switch (st.code()) {
    case Status::Code::kInvalidArgument: return SendError(res, 400, "invalid_argument", st.message());
    case Status::Code::kResourceExhausted: return SendError(res, 413, "too_large", st.message());
    case Status::Code::kNotFound: return SendError(res, 404, "not_found", st.message());
    case Status::Code::kAlreadyExists: return SendError(res, 409, "already_exists", st.message());
    case Status::Code::kConflict: return SendError(res, 409, "conflict", st.message());
    case Status::Code::kPermissionDenied: return SendError(res, 403, "forbidden", st.message());
    case Status::Code::kUnauthenticated: return SendError(res, 401, "unauthenticated", st.message());
    default: return SendError(res, 500, "internal", st.message());
  }
}

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

std::string IsoTime(int64_t ms) {
  if (ms <= 0) return "";
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

json TimeOrNull(int64_t ms) { return ms > 0 ? json(IsoTime(ms)) : json(nullptr); }

bool IsLoopbackHost(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Header values go into logs and (later) the access log: bounded and printable.
bool ValidHeaderValue(const std::string& v, size_t max) {
  if (v.empty() || v.size() > max) return false;
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

struct ApiServer::Impl {
  Node* node;
  httplib::Server server;
  std::thread thread;

  explicit Impl(Node* n) : node(n) {}

  // Checks the bearer token and actor headers; on failure answers and returns nullopt.
  std::optional<Caller> Authenticate(const httplib::Request& req, httplib::Response& res) {
    std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.rfind(prefix, 0) != 0 || auth.size() > prefix.size() + 128) {
      SendError(res, 401, "unauthenticated", "missing or malformed 'Authorization: Bearer <token>' header");
      return std::nullopt;
    }
    auto client = node->store().ClientForToken(HashApiToken(auth.substr(prefix.size())));
    if (!client.ok()) {
      SendStatusError(res, client.status());
      return std::nullopt;
    }
    if (!client->has_value()) {
      SendError(res, 401, "unauthenticated", "unknown or revoked token");
      return std::nullopt;
    }
    Caller c;
    c.client = **client;
    c.actor = req.get_header_value("X-Kring-Actor");
    c.actor_name = req.get_header_value("X-Kring-Actor-Name");
    c.role = req.get_header_value("X-Kring-Role");
    c.on_behalf_of = req.get_header_value("X-Kring-On-Behalf-Of");
    if (!ValidHeaderValue(c.actor, 128)) {
      SendError(res, 400, "missing_actor", "header X-Kring-Actor (the professional's id in your organisation) is required, 1-128 printable characters");
      return std::nullopt;
    }
    if (!ValidHeaderValue(c.actor_name, 200) || !ValidHeaderValue(c.role, 100)) {
      SendError(res, 400, "missing_actor", "headers X-Kring-Actor-Name and X-Kring-Role are required, printable, at most 200 and 100 characters");
      return std::nullopt;
    }
    if (!c.on_behalf_of.empty() && !ValidHeaderValue(c.on_behalf_of, 200)) {
      SendError(res, 400, "invalid_header", "header X-Kring-On-Behalf-Of must be printable and at most 200 characters");
      return std::nullopt;
    }
    return c;
  }

  // Parses a JSON object body; on failure answers and returns nullopt.
  std::optional<json> ParseBody(const httplib::Request& req, httplib::Response& res) {
    if (req.body.size() > kMaxApiBodyBytes) {
      SendError(res, 413, "too_large", "request body is larger than " + std::to_string(kMaxApiBodyBytes) + " bytes");
      return std::nullopt;
    }
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded()) {
      SendError(res, 400, "malformed_json", "request body is not valid JSON");
      return std::nullopt;
    }
    if (!j.is_object()) {
      SendError(res, 400, "invalid_argument", "request body must be a JSON object");
      return std::nullopt;
    }
    return j;
  }

  static bool ParseCase(const std::string& hex, CaseId* out, httplib::Response& res) {
    if (!CaseIdFromHex(hex, out)) {
      SendError(res, 400, "invalid_argument", "case id must be 32 hex characters");
      return false;
    }
    return true;
  }

  void Routes() {
    server.Get("/v1/health", [this](const httplib::Request&, httplib::Response& res) {
      json peers = json::array();
      if (node->sync()) {
        for (const PeerStatus& p : node->sync()->Peers()) {
          peers.push_back({{"org", p.org}, {"name", p.display_name}, {"endpoint", p.endpoint},
                           {"connected", p.connected}, {"last_seen", TimeOrNull(p.last_seen_ms)},
                           {"last_sync", TimeOrNull(p.last_sync_ms)}});
        }
      }
      auto count = node->store().CountRecords();
      SendJson(res, 200, {{"status", "ok"}, {"org", node->identity().org}, {"name", node->identity().display_name},
                          {"version", kVersion}, {"fragments", count.ok() ? *count : -1}, {"peers", peers}});
    });

    server.Post("/v1/cases", [this](const httplib::Request& req, httplib::Response& res) {
      auto caller = Authenticate(req, res);
      if (!caller) return;
      auto body = ParseBody(req, res);
      if (!body) return;
      std::string label;
      if (auto it = body->find("label"); it != body->end()) {
        if (!it->is_string()) return SendError(res, 400, "invalid_argument", "'label' must be a string");
        label = it->get<std::string>();
      }
      auto id = node->CreateCase(label);
      if (!id.ok()) return SendStatusError(res, id.status());
      KRING_LOG(kInfo, "api", caller->client << "/" << caller->actor << " created case " << CaseIdToHex(*id));
      SendJson(res, 201, {{"case", CaseIdToHex(*id)}});
    });

    server.Get("/v1/cases", [this](const httplib::Request& req, httplib::Response& res) {
      auto caller = Authenticate(req, res);
      if (!caller) return;
      auto cases = node->store().ListCases();
      if (!cases.ok()) return SendStatusError(res, cases.status());
      json list = json::array();
      for (const CaseSummary& c : *cases) {
        json e = {{"case", CaseIdToHex(c.case_id)}, {"fragments", c.fragments}};
        if (!c.label.empty()) e["label"] = c.label;
        list.push_back(std::move(e));
      }
      SendJson(res, 200, {{"cases", list}});
    });

    server.Post(R"(/v1/cases/([^/]+)/fragments)", [this](const httplib::Request& req, httplib::Response& res) {
      auto caller = Authenticate(req, res);
      if (!caller) return;
      FragmentWrite w;
      if (!ParseCase(req.matches[1], &w.case_id, res)) return;
      auto body = ParseBody(req, res);
      if (!body) return;
      static const std::set<std::string> kFields = {"kind", "domain", "recipients", "predecessors", "body"};
      for (auto& [k, v] : body->items())
        if (!kFields.count(k)) return SendError(res, 400, "unknown_field", "unknown field '" + k + "'");
      auto kind = body->find("kind");
      if (kind == body->end() || !kind->is_string()) return SendError(res, 400, "invalid_argument", "'kind' (string) is required");
      w.kind = kind->get<std::string>();
      if (auto d = body->find("domain"); d != body->end()) {
        if (!d->is_string()) return SendError(res, 400, "invalid_argument", "'domain' must be a string");
        w.domain = d->get<std::string>();
      }
      auto recipients = body->find("recipients");
      if (recipients != body->end()) {
        if (!recipients->is_array()) return SendError(res, 400, "invalid_argument", "'recipients' must be an array of organisation ids");
        for (const json& r : *recipients) {
          if (!r.is_string()) return SendError(res, 400, "invalid_argument", "'recipients' must be an array of organisation ids");
          w.recipients.push_back(r.get<std::string>());
        }
      }
      if (auto p = body->find("predecessors"); p != body->end()) {
        if (!p->is_array()) return SendError(res, 400, "invalid_argument", "'predecessors' must be an array of fragment ids");
        for (const json& e : *p) {
          FragmentId id;
          if (!e.is_string() || !FromHex(e.get<std::string>(), id))
            return SendError(res, 400, "invalid_argument", "each predecessor must be a 64-hex-character fragment id");
          w.predecessors.push_back(id);
        }
      }
      auto b = body->find("body");
      if (b == body->end()) return SendError(res, 400, "invalid_argument", "'body' is required");
      std::string text = b->dump();
      w.body.assign(text.begin(), text.end());
      sodium_memzero(text.data(), text.size());
      auto id = node->WriteFragment(w);
      if (!id.ok()) return SendStatusError(res, id.status());
      KRING_LOG(kInfo, "api", caller->client << "/" << caller->actor << " wrote " << w.kind << " fragment "
                                             << ToHex(*id).substr(0, 16) << " to case " << CaseIdToHex(w.case_id));
      SendJson(res, 201, {{"fragment", ToHex(*id)}});
    });

    server.Get(R"(/v1/cases/([^/]+)/fragments)", [this](const httplib::Request& req, httplib::Response& res) {
      auto caller = Authenticate(req, res);
      if (!caller) return;
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      auto known = node->store().CaseKnown(case_id);
      if (!known.ok()) return SendStatusError(res, known.status());
      if (!*known) return SendError(res, 404, "not_found", "no case " + std::string(req.matches[1]) + " on this node");
      auto fragments = node->ReadFragments(case_id);
      if (!fragments.ok()) return SendStatusError(res, fragments.status());
      json list = json::array();
      for (const ReadableFragment& f : *fragments) {
        json preds = json::array();
        for (const FragmentId& p : f.predecessors) preds.push_back(ToHex(p));
        json body = json::parse(f.body.begin(), f.body.end(), nullptr, false);
        list.push_back({{"fragment", ToHex(f.id)}, {"author", f.author}, {"kind", f.kind}, {"domain", f.domain},
                        {"hlc", f.hlc}, {"created", IsoTime(static_cast<int64_t>(HlcMillis(f.hlc)))},
                        {"predecessors", preds}, {"recipients", f.recipients},
                        {"body", body.is_discarded() ? json(nullptr) : body}});
      }
      SendJson(res, 200, {{"case", CaseIdToHex(case_id)}, {"fragments", list}});
    });

    server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404) SendError(res, 404, "not_found", "no such endpoint");
      else if (res.status == 413) SendError(res, 413, "too_large", "request body too large");
      else SendError(res, res.status, "http_error", "HTTP error " + std::to_string(res.status));
    });
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unexpected error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      KRING_LOG(kError, "api", "request failed: " << what);
      SendError(res, 500, "internal", "internal error");
    });
  }
};

ApiServer::ApiServer(Node* node) : impl_(std::make_unique<Impl>(node)) {}
ApiServer::~ApiServer() { Stop(); }

Status ApiServer::Start(const std::string& host, int port) {
  if (!IsLoopbackHost(host))
    return Status::InvalidArgument("the API serves plain HTTP and binds only to loopback (127.0.0.1 or ::1); got '" + host + "'");
  impl_->server.set_payload_max_length(kMaxApiBodyBytes);
  impl_->server.set_read_timeout(10, 0);
  impl_->server.set_write_timeout(10, 0);
  impl_->server.new_task_queue = [] { return new httplib::ThreadPool(4); };
  impl_->Routes();
  if (!impl_->server.bind_to_port(host, port))
    return Status::IOError("cannot bind the API to " + host + ":" + std::to_string(port) + " (in use?)");
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  return Status::Ok();
}

void ApiServer::Stop() {
  if (impl_->thread.joinable()) {
    impl_->server.stop();
    impl_->thread.join();
  }
}

}  // namespace kring
