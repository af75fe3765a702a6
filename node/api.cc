// HTTP routes of the local API: authentication, actor headers, JSON errors, access logging; cases, consent, plan, FHIR.
#include "node/api.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <limits>
#include <regex>
#include <set>
#include <thread>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "crypto/primitives.h"
#include "node/api_listener.h"
#include "node/log.h"
#include "node/node.h"
#include "node/openapi.h"
#include "plan/fhir.h"
#include "plan/items.h"
#include "protocol/record.h"

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

using Caller = Actor;

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
  // Text that came from a peer is checked on receipt; replacing, not
  // throwing, keeps one bad byte from turning a read into a 500.
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

std::string IsoTime(int64_t ms) {
  if (ms < 0) return "";
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


// Header values go into logs and (later) the access log: bounded and printable.
bool ValidHeaderValue(const std::string& v, size_t max) {
  if (v.empty() || v.size() > max || !IsValidUtf8(v)) return false;
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

// Parses "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SS[.sss]Z" as Unix milliseconds.
std::optional<int64_t> ParseIsoTime(const std::string& s) {
  int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
  char z = 0;
  int n = 0;
  if (s.size() == 10) {
    if (std::sscanf(s.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10) return std::nullopt;
  } else if (s.size() == 20) {
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &y, &mo, &d, &h, &mi, &sec, &z, &n) != 7 || z != 'Z' || n != 20)
      return std::nullopt;
  } else if (s.size() == 24) {
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c%n", &y, &mo, &d, &h, &mi, &sec, &ms, &z, &n) != 8 || z != 'Z' || n != 24)
      return std::nullopt;
  } else {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  std::time_t t = timegm(&tm);
  // timegm rolls 2025-02-31 over to March; a date that moved did not exist.
  if (t < 0 || tm.tm_mday != d || tm.tm_mon != mo - 1) return std::nullopt;
  return static_cast<int64_t>(t) * 1000 + ms;
}

const char* OutcomeOf(int status) {
  if (status >= 200 && status < 300) return "success";
  if (status == 401 || status == 403) return "denied";
  return "failure";
}

// Issue 14: paging, idempotent retries, the change feed.
constexpr size_t kMaxPageLimit = 1000;          // the most entries one page holds (and the default)
constexpr size_t kDefaultChangesLimit = 100;
constexpr int kMaxWaitSeconds = 60;             // the longest a change-feed call waits
constexpr int kMaxLongPolls = 2;                // waiting calls at once; the API has 4 workers
constexpr int64_t kIdempotencyWindowMs = 24LL * 60 * 60 * 1000;
constexpr size_t kMaxIdempotencyKeyBytes = 255;

// An opaque cursor: the list it belongs to and the sort key of the last
// entry returned, so a page continues after it however the list grew.
std::string MakeCursor(char list, const std::string& key) {
  return std::string(1, list) + ToHex(ByteSpan(reinterpret_cast<const uint8_t*>(key.data()), key.size()));
}

std::optional<std::string> CursorKey(char list, const std::string& cursor) {
  if (cursor.size() < 3 || cursor.size() > 1024 || cursor[0] != list || cursor.size() % 2 != 1) return std::nullopt;
  std::string key((cursor.size() - 1) / 2, '\0');
  if (!FromHex(std::string_view(cursor).substr(1), std::span<uint8_t>(reinterpret_cast<uint8_t*>(key.data()), key.size())))
    return std::nullopt;
  return key;
}

// 16 hex digits: sorts like the number for 0 <= v.
std::string SortableNumber(int64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(std::max<int64_t>(v, 0)));
  return buf;
}

// The value of an ETag or If-Match header without quotes or W/.
std::string EtagValue(std::string v) {
  if (v.rfind("W/", 0) == 0) v = v.substr(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return v;
}

}  // namespace

bool JsonNestingWithin(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

ApiBody ParseApiBody(std::string_view content_type, std::string_view body) {
  ApiBody out;
  auto fail = [&](int status, const char* error, std::string message) {
    out.status = status;
    out.error = error;
    out.message = std::move(message);
    return std::move(out);
  };
  std::string media(content_type.substr(0, content_type.find(';')));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  std::transform(media.begin(), media.end(), media.begin(), [](unsigned char c) { return std::tolower(c); });
  if (!body.empty() && !media.empty() && media != "application/json")
    return fail(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'");
  if (body.empty()) {
    out.value = json::object();  // no body: no fields
    return out;
  }
  if (body.size() > kMaxApiBodyBytes)
    return fail(413, "too_large", "request body is larger than " + std::to_string(kMaxApiBodyBytes) + " bytes");
  if (!JsonNestingWithin(body, kMaxApiJsonDepth))
    return fail(400, "too_deep", "request body nests arrays and objects deeper than " +
                                     std::to_string(kMaxApiJsonDepth) + " levels");
  out.value = json::parse(body, nullptr, false);
  if (out.value.is_discarded()) return fail(400, "malformed_json", "request body is not valid JSON");
  if (!out.value.is_object()) return fail(400, "invalid_argument", "request body must be a JSON object");
  return out;
}

struct ApiServer::Impl {
  Node* node;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  std::mutex metrics_mu;
  std::map<int, uint64_t> requests_by_status;
  bool tls = false;

  // The server (also `server`): admission, deadlines, lanes; TLS when given.
  ApiListener* listener = nullptr;
  FhirOptions fhir;

  // Every route as registered, for 405 and Allow on a known path with another method.
  std::vector<std::pair<std::string, std::regex>> routes;
  // Idempotency keys being served now: a retry waits for the first call's answer.
  std::mutex idem_mu;
  std::condition_variable idem_cv;
  std::set<std::pair<std::string, Hash>> idem_in_flight;
  std::atomic<int> long_polls{0};

  explicit Impl(Node* n) : node(n) {}

  // Limits, metrics and routes, the same for HTTP, HTTPS and ServeSocket.
  void Configure() {
    // Deadlines, TCP_NODELAY and the worker threads are ApiListener's: it
    // replaces httplib's socket handling, whose timeouts apply per call.
    server->set_payload_max_length(kMaxApiBodyBytes);
    // Counted before the answer is written, so a client that reads /metrics
    // right after an answer sees it counted.
    server->set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(metrics_mu);
        ++requests_by_status[res.status];
      }
      KRING_LOG(kDebug, "api", req.method << " " << req.path << " -> " << res.status);
    });
    Routes();
  }

  // Writes the NEN 7513 entry for a call that touched case data, before the
  // answer leaves. If the log cannot be written the caller gets a 500
  // instead of the data: no access without a trace.
  void LogAccess(httplib::Response& res, const Caller& c, const char* action, const std::optional<CaseId>& case_id,
                 std::vector<std::string> items, const std::string& consent = "") {
    AccessEntry e;
    RandomBytes(e.event_id);
    e.time_ms = static_cast<int64_t>(HybridClock::SystemMillis());
    e.action = action;
    e.outcome = OutcomeOf(res.status);
    e.actor_id = c.id;
    e.actor_name = c.name;
    e.actor_role = c.role;
    e.on_behalf_of = c.on_behalf_of;
    e.organisation = node->identity().org;
    e.client_system = c.client;
    e.case_id = case_id;
    e.items = std::move(items);
    e.consent = consent;
    Status st = node->AppendAccess(&e);
    if (!st.ok()) {
      KRING_LOG(kError, "audit", "cannot write the access log: " << st.ToString());
      SendError(res, 500, "internal", "the access log cannot be written; the request was not served");
    }
  }

  std::string Metrics() {
    std::ostringstream m;
    auto count = node->store().CountFragments();
    m << "# HELP kring_build_info The kring-node version serving these metrics (always 1).\n"
      << "# TYPE kring_build_info gauge\n"
      << "kring_build_info{version=\"" << kVersion << "\"} 1\n";
    m << "# HELP kring_fragments_stored Fragments held by this node.\n"
      << "# TYPE kring_fragments_stored gauge\n"
      << "kring_fragments_stored " << (count.ok() ? *count : 0) << "\n";
    std::vector<PeerStatus> peers = node->sync() ? node->sync()->Peers() : std::vector<PeerStatus>();
    int connected = 0;
    for (const PeerStatus& p : peers) connected += p.connected ? 1 : 0;
    m << "# HELP kring_peers_connected Partners whose link completed a handshake with the key on their card.\n"
      << "# TYPE kring_peers_connected gauge\n"
      << "kring_peers_connected " << connected << "\n";
    m << "# HELP kring_peer_state The state of the link to each partner (1 for its current state, 0 for the others).\n"
      << "# TYPE kring_peer_state gauge\n";
    bool degraded = false;
    for (const PeerStatus& p : peers) {
      degraded = degraded || p.degraded;
      for (PeerState s : kAllPeerStates)
        m << "kring_peer_state{peer=\"" << p.org << "\",state=\"" << PeerStateName(s) << "\"} " << (p.state == s ? 1 : 0) << "\n";
    }
    m << "# HELP kring_node_degraded 1 when a partner has not been connected for longer than --degraded-after-s (/v1/health status).\n"
      << "# TYPE kring_node_degraded gauge\n"
      << "kring_node_degraded " << (degraded ? 1 : 0) << "\n";
    m << "# HELP kring_peer_sync_lag_seconds Seconds since the last completed reconciliation with each partner (-1: never).\n"
      << "# TYPE kring_peer_sync_lag_seconds gauge\n";
    int64_t now = static_cast<int64_t>(HybridClock::SystemMillis());
    for (const PeerStatus& p : peers)
      m << "kring_peer_sync_lag_seconds{peer=\"" << p.org << "\"} "
        << (p.last_sync_ms > 0 ? static_cast<double>(now - p.last_sync_ms) / 1000.0 : -1.0) << "\n";
    SyncStats stats = node->sync() ? node->sync()->Stats() : SyncStats();
    m << "# HELP kring_messages_rejected_total Messages or records from peers rejected, by reason.\n"
      << "# TYPE kring_messages_rejected_total counter\n";
    for (auto& [reason, n] : stats.rejected) m << "kring_messages_rejected_total{reason=\"" << reason << "\"} " << n << "\n";
    m << "# HELP kring_ingest_queue_pushes Pushes received from each partner and waiting to be stored.\n"
      << "# TYPE kring_ingest_queue_pushes gauge\n";
    for (auto& [org, n] : stats.ingest_queue_pushes) m << "kring_ingest_queue_pushes{partner=\"" << org << "\"} " << n << "\n";
    m << "# HELP kring_fragments_received_total Fragments newly stored from peers.\n"
      << "# TYPE kring_fragments_received_total counter\n"
      << "kring_fragments_received_total " << stats.fragments_received << "\n";
    m << "# HELP kring_unreadable_fragments_total Stored fragments whose body did not open or validate for this organisation (kept, shown as unreadable).\n"
      << "# TYPE kring_unreadable_fragments_total counter\n"
      << "kring_unreadable_fragments_total " << node->unreadable_fragments() << "\n";
    // Counted where messages meet the ZeroMQ socket: the kring frame's bytes (SyncStats).
    m << "# HELP kring_reconcile_sessions_total Reconciliation sessions this node started that completed.\n"
      << "# TYPE kring_reconcile_sessions_total counter\n"
      << "kring_reconcile_sessions_total " << stats.reconcile_sessions << "\n";
    m << "# HELP kring_reconcile_round_trips_total Round trips of those sessions (one message sent and its reply).\n"
      << "# TYPE kring_reconcile_round_trips_total counter\n"
      << "kring_reconcile_round_trips_total " << stats.reconcile_round_trips << "\n";
    m << "# HELP kring_reconcile_bytes_sent_total Bytes of reconcile messages sent to partners (kring frames, both roles).\n"
      << "# TYPE kring_reconcile_bytes_sent_total counter\n"
      << "kring_reconcile_bytes_sent_total " << stats.reconcile_bytes_sent << "\n";
    m << "# HELP kring_reconcile_bytes_received_total Bytes of reconcile messages received from partners (kring frames, both roles).\n"
      << "# TYPE kring_reconcile_bytes_received_total counter\n"
      << "kring_reconcile_bytes_received_total " << stats.reconcile_bytes_received << "\n";
    m << "# HELP kring_push_bytes_sent_total Bytes of push messages sent to partners (records and their framing).\n"
      << "# TYPE kring_push_bytes_sent_total counter\n"
      << "kring_push_bytes_sent_total " << stats.push_bytes_sent << "\n";
    m << "# HELP kring_push_records_sent_total Records sent to partners in push messages.\n"
      << "# TYPE kring_push_records_sent_total counter\n"
      << "kring_push_records_sent_total " << stats.push_records_sent << "\n";
    m << "# HELP kring_consent_withdrawals_processed_total Consent withdrawals this node recorded or received.\n"
      << "# TYPE kring_consent_withdrawals_processed_total counter\n"
      << "kring_consent_withdrawals_processed_total " << node->withdrawals_processed() << "\n";
    if (listener) {
      ApiListenerStats conn = listener->Stats();
      m << "# HELP kring_api_connections_refused_total API connections answered 503 at once: too many open, or every worker busy.\n"
        << "# TYPE kring_api_connections_refused_total counter\n"
        << "kring_api_connections_refused_total " << conn.refused << "\n"
        << "# HELP kring_api_requests_timed_out_total API connections closed because a request did not arrive within its deadline.\n"
        << "# TYPE kring_api_requests_timed_out_total counter\n"
        << "kring_api_requests_timed_out_total " << conn.timed_out << "\n";
    }
    m << "# HELP kring_portal_rejected_total Citizen input the portal refused (codes, signatures), by reason.\n"
      << "# TYPE kring_portal_rejected_total counter\n";
    for (auto& [reason, n] : node->CitizenRejections()) m << "kring_portal_rejected_total{reason=\"" << reason << "\"} " << n << "\n";
    m << "# HELP kring_api_requests_total API requests answered, by HTTP status.\n"
      << "# TYPE kring_api_requests_total counter\n";
    std::lock_guard lock(metrics_mu);
    for (auto& [status, n] : requests_by_status) m << "kring_api_requests_total{status=\"" << status << "\"} " << n << "\n";
    return m.str();
  }

  // Checks the bearer token and actor headers; on failure answers and returns nullopt.
  std::optional<Caller> Authenticate(const httplib::Request& req, httplib::Response& res) {
    auto client = AuthenticateClient(req, res);
    if (!client) return std::nullopt;
    Caller c;
    c.client = *client;
    c.id = req.get_header_value("X-Kring-Actor");
    c.name = req.get_header_value("X-Kring-Actor-Name");
    c.role = req.get_header_value("X-Kring-Role");
    c.on_behalf_of = req.get_header_value("X-Kring-On-Behalf-Of");
    if (!ValidHeaderValue(c.id, 128)) {
      SendError(res, 400, "missing_actor", "header X-Kring-Actor (the professional's id in your organisation) is required, 1-128 printable characters");
      return std::nullopt;
    }
    if (!ValidHeaderValue(c.name, 200) || !ValidHeaderValue(c.role, 100)) {
      SendError(res, 400, "missing_actor", "headers X-Kring-Actor-Name and X-Kring-Role are required, printable, at most 200 and 100 characters");
      return std::nullopt;
    }
    if (!c.on_behalf_of.empty() && !ValidHeaderValue(c.on_behalf_of, 200)) {
      SendError(res, 400, "invalid_header", "header X-Kring-On-Behalf-Of must be printable and at most 200 characters");
      return std::nullopt;
    }
    return c;
  }

  // Checks the bearer token; the client system's name, or nullopt after answering.
  std::optional<std::string> AuthenticateClient(const httplib::Request& req, httplib::Response& res) {
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
    return **client;
  }

  // Parses a JSON object body; on failure answers and returns nullopt.
  std::optional<json> ParseBody(const httplib::Request& req, httplib::Response& res) {
    ApiBody body = ParseApiBody(req.get_header_value("Content-Type"), req.body);
    if (body.status != 0) {
      SendError(res, body.status, body.error, body.message);
      return std::nullopt;
    }
    return std::move(body.value);
  }

  // What a call touched, filled in by its handler for the access log.
  struct AccessScope {
    std::optional<CaseId> case_id;
    std::vector<std::string> items;
    std::string consent;
  };
  using CaseHandler = std::function<void(const httplib::Request&, httplib::Response&, const Caller&, AccessScope&)>;

  // Authenticates, runs `handle`, and writes the access-log entry for what it
  // touched (whatever the outcome) before the answer leaves.
  // Query parameters outside `params` are refused (400 unknown_parameter).
  // A POST with an Idempotency-Key is answered from the first call's answer
  // when it is a retry (docs/api.md, "Retrying a write").
  httplib::Server::Handler CaseRoute(const char* action, CaseHandler handle,
                                     std::initializer_list<const char*> params = {}) {
    std::vector<std::string> allowed(params.begin(), params.end());
    return [this, action, allowed, handle = std::move(handle)](const httplib::Request& req, httplib::Response& res) {
      auto caller = Authenticate(req, res);
      if (!caller) return;
      AccessScope scope;
      if (!OnlyParams(req, allowed, res)) {
        LogAccess(res, *caller, action, scope.case_id, {}, "");
        return;
      }
      if (req.method == "POST" && req.has_header("Idempotency-Key")) {
        Idempotent(req, res, *caller, action, handle);
        return;
      }
      handle(req, res, *caller, scope);
      LogAccess(res, *caller, action, scope.case_id, std::move(scope.items), scope.consent);
    };
  }

  static bool OnlyParams(const httplib::Request& req, const std::vector<std::string>& allowed, httplib::Response& res) {
    for (const auto& [name, value] : req.params) {
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        SendError(res, 400, "unknown_parameter", "unknown query parameter '" + name.substr(0, 64) + "'");
        return false;
      }
      if (req.get_param_value_count(name) > 1) {
        SendError(res, 400, "invalid_argument", "query parameter '" + name.substr(0, 64) + "' is given more than once");
        return false;
      }
    }
    return true;
  }

  // A retried POST: the first answer again, nothing created; another request
  // under the same key is 409. Answers are kept 24 h per client system,
  // sealed with a key derived from the Idempotency-Key (which is not stored).
  void Idempotent(const httplib::Request& req, httplib::Response& res, const Caller& caller, const char* action,
                  const CaseHandler& handle) {
    const std::string key = req.get_header_value("Idempotency-Key");
    if (!ValidHeaderValue(key, kMaxIdempotencyKeyBytes)) {
      SendError(res, 400, "invalid_header", "header Idempotency-Key must be 1-255 printable characters");
      return LogAccess(res, caller, action, std::nullopt, {}, "");
    }
    auto bytes = [](const std::string& v) { return ByteSpan(reinterpret_cast<const uint8_t*>(v.data()), v.size()); };
    const Hash key_hash = HashParts("kring/idempotency-key/v1", {bytes(caller.client), bytes(key)});
    const Hash seal_hash = HashParts("kring/idempotency-seal/v1", {bytes(caller.client), bytes(key)});
    const std::string if_match = req.get_header_value("If-Match");
    const Hash request = HashParts("kring/idempotency-request/v1",
                                   {bytes(req.method), bytes(req.path), bytes(if_match), bytes(req.body)});
    ContentKey seal;
    std::memcpy(seal.data(), seal_hash.data(), seal.size());
    const std::pair<std::string, Hash> slot{caller.client, key_hash};
    {  // one call per key at a time: a retry racing the first waits for its answer
      std::unique_lock lock(idem_mu);
      idem_cv.wait(lock, [&] { return !idem_in_flight.count(slot); });
      idem_in_flight.insert(slot);
    }
    struct Release {
      Impl* self;
      std::pair<std::string, Hash> slot;
      ~Release() {
        {
          std::lock_guard lock(self->idem_mu);
          self->idem_in_flight.erase(slot);
        }
        self->idem_cv.notify_all();
      }
    } release{this, slot};
    const int64_t now = NowMs();
    auto kept = node->store().GetIdempotent(caller.client, key_hash, now - kIdempotencyWindowMs);
    if (!kept.ok()) {
      SendStatusError(res, kept.status());
      return LogAccess(res, caller, action, std::nullopt, {}, "");
    }
    if (kept->has_value()) {
      const IdempotentAnswer& a = **kept;
      if (!ConstantTimeEqual(a.request, request)) {
        SendError(res, 409, "idempotency_key_reused",
                  "this Idempotency-Key was used in the last 24 hours for another request; use a new key for a new request");
        return LogAccess(res, caller, action, a.case_id, {}, "");
      }
      Nonce nonce{};
      Result<Bytes> plain = Status::Corruption("too short");
      if (a.answer.size() > nonce.size()) {
        std::memcpy(nonce.data(), a.answer.data(), nonce.size());
        plain = AeadDecrypt(seal, nonce, request, ByteSpan(a.answer).subspan(nonce.size()));
      }
      json answer = plain.ok() ? json::parse(plain->begin(), plain->end(), nullptr, false) : json();
      if (plain.ok()) sodium_memzero(plain->data(), plain->size());
      if (!answer.is_object() || !answer["status"].is_number_integer() || !answer["body"].is_string()) {
        SendError(res, 500, "internal", "the answer kept for this Idempotency-Key cannot be read");
        return LogAccess(res, caller, action, a.case_id, {}, "");
      }
      res.status = answer["status"].get<int>();
      res.set_content(answer["body"].get<std::string>(), answer.value("content_type", "application/json"));
      for (const char* h : {"Location", "ETag"})
        if (answer.contains(h)) res.set_header(h, answer[h].get<std::string>());
      res.set_header("Idempotent-Replayed", "true");
      return LogAccess(res, caller, action, a.case_id, {"idempotent-replay"}, "");
    }
    AccessScope scope;
    handle(req, res, caller, scope);
    LogAccess(res, caller, action, scope.case_id, std::move(scope.items), scope.consent);
    if (res.status >= 500) return;  // not an answer to keep: the retry may succeed
    json answer = {{"status", res.status}, {"body", res.body}, {"content_type", res.get_header_value("Content-Type")}};
    for (const char* h : {"Location", "ETag"})
      if (res.has_header(h)) answer[h] = res.get_header_value(h);
    std::string text = answer.dump();
    Nonce nonce;  // random: a key reused after 24 hours seals another answer
    RandomBytes(nonce);
    IdempotentAnswer a;
    a.request = request;
    a.status = res.status;
    a.answer.assign(nonce.begin(), nonce.end());
    Bytes sealed = AeadEncrypt(seal, nonce, request, bytes(text));
    a.answer.insert(a.answer.end(), sealed.begin(), sealed.end());
    sodium_memzero(text.data(), text.size());
    a.case_id = scope.case_id;
    a.time_ms = now;
    Status st = node->store().PutIdempotent(caller.client, key_hash, a, now - kIdempotencyWindowMs);
    if (!st.ok()) KRING_LOG(kError, "api", "cannot keep the answer for an Idempotency-Key: " << st.ToString());
  }

  // Reads `limit` (1..kMaxPageLimit) and `cursor` of list `list`; answers 400 on failure.
  struct Page {
    size_t limit = kMaxPageLimit;
    std::optional<std::string> after;  // the sort key of the last entry already seen
  };
  static bool ParsePage(const httplib::Request& req, char list, size_t default_limit, Page* page, httplib::Response& res) {
    page->limit = default_limit;
    if (req.has_param("limit")) {
      const std::string v = req.get_param_value("limit");
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || v.size() > 5 || *end != '\0' || n < 1 || n > static_cast<long>(kMaxPageLimit)) {
        SendError(res, 400, "invalid_argument", "'limit' must be a whole number from 1 to " + std::to_string(kMaxPageLimit));
        return false;
      }
      page->limit = static_cast<size_t>(n);
    }
    if (req.has_param("cursor")) {
      page->after = CursorKey(list, req.get_param_value("cursor"));
      if (!page->after) {
        SendError(res, 400, "invalid_argument", "'cursor' is not a cursor this list gave out");
        return false;
      }
    }
    return true;
  }

  // One page of `entries` (sorted by key): those after the cursor, up to the
  // limit; `next` is the cursor of the next page when there are more.
  static json TakePage(const std::vector<std::pair<std::string, json>>& entries, const Page& page, char list,
                       std::optional<std::string>* next) {
    auto it = entries.begin();
    if (page.after)
      it = std::upper_bound(entries.begin(), entries.end(), *page.after,
                            [](const std::string& k, const std::pair<std::string, json>& e) { return k < e.first; });
    json out = json::array();
    for (; it != entries.end() && out.size() < page.limit; ++it) out.push_back(it->second);
    if (it != entries.end() && !out.empty()) *next = MakeCursor(list, std::prev(it)->first);
    return out;
  }

  void Get(const std::string& pattern, httplib::Server::Handler h) {
    routes.emplace_back("GET", std::regex(pattern));
    server->Get(pattern, std::move(h));
  }
  void Post(const std::string& pattern, httplib::Server::Handler h) {
    routes.emplace_back("POST", std::regex(pattern));
    server->Post(pattern, std::move(h));
  }
  void Delete(const std::string& pattern, httplib::Server::Handler h) {
    routes.emplace_back("DELETE", std::regex(pattern));
    server->Delete(pattern, std::move(h));
  }

  int64_t NowMs() const { return static_cast<int64_t>(HybridClock::SystemMillis()); }

  static std::string Join(const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& s : v) out += (out.empty() ? "" : ",") + s;
    return out;
  }

  // Refuses a body with fields outside `allowed`.
  static bool OnlyFields(const json& body, std::initializer_list<const char*> allowed, httplib::Response& res) {
    for (const auto& field : body.items()) {
      const std::string& k = field.key();  // not a structured binding: clang 14 cannot capture those
      if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) {
        SendError(res, 400, "unknown_field", "unknown field '" + k + "'");
        return false;
      }
    }
    return true;
  }

  // Reads a string field; answers 400 when it is required and missing, or not a string.
  static bool StringField(const json& body, const char* name, bool required, std::string* out, httplib::Response& res) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) {
      if (!required) return true;
      SendError(res, 400, "invalid_argument", std::string("'") + name + "' is required");
      return false;
    }
    if (!it->is_string()) {
      SendError(res, 400, "invalid_argument", std::string("'") + name + "' must be a string");
      return false;
    }
    *out = it->get<std::string>();
    return true;
  }

  // A consent as the API shows it (GET .../consents, .../consents/{consent}):
  // with whether this node still shares with its grantee.
  static json ConsentJson(const ConsentView& v, const Node::GranteeDirectory& grantees) {
    json e = ConsentToJson(v);
    e["grantee_status"] = grantees.Status(v.grant->grantee.v);
    return e;
  }

  static bool ParseCase(const std::string& hex, CaseId* out, httplib::Response& res) {
    if (!CaseIdFromHex(hex, out)) {
      SendError(res, 400, "invalid_argument", "case id must be 32 hex characters");
      return false;
    }
    return true;
  }

  const FhirOptions& fhir_options() const { return fhir; }

  // GET /v1/changes: a system access of the client system, logged once per
  // call; waits up to `wait` seconds for a change when there is none yet.
  void Changes(const httplib::Request& req, httplib::Response& res) {
    auto client = AuthenticateClient(req, res);
    if (!client) return;
    Caller caller;
    caller.client = *client;
    caller.id = *client;
    caller.name = *client + " (system)";
    caller.role = "system";
    auto done = [&] { LogAccess(res, caller, "read", std::nullopt, {"changes"}); };
    if (!OnlyParams(req, {"since", "limit", "wait"}, res)) return done();
    Page page;
    if (!ParsePage(req, 'c', kDefaultChangesLimit, &page, res)) return done();
    int64_t after = 0;
    if (req.has_param("since")) {
      auto key = CursorKey('c', req.get_param_value("since"));
      char* end = nullptr;
      long long v = key && key->size() == 16 ? std::strtoll(key->c_str(), &end, 16) : -1;
      if (!key || key->size() != 16 || *end != '\0' || v < 0) {
        SendError(res, 400, "invalid_argument", "'since' must be a cursor the change feed gave out");
        return done();
      }
      after = v;
    }
    int wait = 0;
    if (req.has_param("wait")) {
      const std::string v = req.get_param_value("wait");
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || v.size() > 2 || *end != '\0' || n < 0 || n > kMaxWaitSeconds) {
        SendError(res, 400, "invalid_argument", "'wait' must be a whole number of seconds from 0 to 60");
        return done();
      }
      wait = static_cast<int>(n);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait);
    // Only a few calls wait at once, so that waiting calls never take every worker.
    bool waiting = wait > 0 && long_polls.fetch_add(1) < kMaxLongPolls;
    if (wait > 0 && !waiting) long_polls.fetch_sub(1);
    ChangePage got;
    for (;;) {
      auto changes = node->Changes(after, page.limit);
      if (!changes.ok()) {
        SendStatusError(res, changes.status());
        break;
      }
      got = std::move(*changes);
      after = got.next_seq;
      if (!got.changes.empty() || !waiting) break;
      // Nothing this organisation may see yet: sleep until the store commits a change.
      if (!node->store().WaitForChange(after, deadline)) {
        auto again = node->Changes(after, page.limit);  // one last look: a change may have come with the deadline
        if (again.ok()) got = std::move(*again), after = got.next_seq;
        break;
      }
    }
    if (waiting) long_polls.fetch_sub(1);
    if (res.status >= 400 && !res.body.empty()) return done();
    json list = json::array();
    for (const Change& c : got.changes) {
      json e = c.ids;
      e["cursor"] = MakeCursor('c', SortableNumber(c.seq));
      e["time"] = IsoTime(c.time_ms);
      e["change"] = c.kind;
      e["case"] = CaseIdToHex(c.case_id);
      list.push_back(std::move(e));
    }
    SendJson(res, 200, {{"changes", list}, {"cursor", MakeCursor('c', SortableNumber(after))}});
    done();
  }

  void Routes() {
    Get("/v1/health", [this](const httplib::Request& req, httplib::Response& res) {
      if (!OnlyParams(req, {}, res)) return;
      json peers = json::array();
      bool degraded = false;
      if (node->sync()) {
        for (const PeerStatus& p : node->sync()->Peers()) {
          degraded = degraded || p.degraded;
          peers.push_back({{"org", p.org}, {"name", p.display_name}, {"endpoint", p.endpoint},
                           {"state", PeerStateName(p.state)}, {"cause", p.cause.empty() ? json(nullptr) : json(p.cause)},
                           {"since", TimeOrNull(p.state_since_ms)}, {"last_connected", TimeOrNull(p.last_connected_ms)},
                           {"degraded", p.degraded},
                           {"connected", p.connected}, {"last_seen", TimeOrNull(p.last_seen_ms)},
                           {"last_sync", TimeOrNull(p.last_sync_ms)}});
        }
      }
      auto count = node->store().CountFragments();
      SendJson(res, 200, {{"status", degraded ? "degraded" : "ok"}, {"org", node->identity().org}, {"name", node->identity().display_name},
                          {"version", kVersion}, {"fragments", count.ok() ? *count : -1}, {"peers", peers}});
    });

    Get("/v1/openapi.yaml", [](const httplib::Request& req, httplib::Response& res) {
      if (!OnlyParams(req, {}, res)) return;
      res.set_content(kOpenApiYaml, "application/yaml");
    });

    Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
      if (!OnlyParams(req, {}, res)) return;
      res.set_content(Metrics(), "text/plain; version=0.0.4");
    });

    Post("/v1/cases", CaseRoute("create", [this](const httplib::Request& req, httplib::Response& res,
                                                         const Caller& caller, AccessScope& scope) {
      auto body = ParseBody(req, res);
      if (!body) return;
      if (!OnlyFields(*body, {"label"}, res)) return;
      std::string label;
      if (auto it = body->find("label"); it != body->end()) {
        if (!it->is_string()) return SendError(res, 400, "invalid_argument", "'label' must be a string");
        label = it->get<std::string>();
      }
      auto id = node->CreateCase(label);
      if (!id.ok()) return SendStatusError(res, id.status());
      scope.case_id = *id;
      KRING_LOG(kInfo, "api", caller.client << " opened case " << CaseIdToHex(*id));
      res.set_header("Location", "/v1/cases/" + CaseIdToHex(*id));
      SendJson(res, 201, {{"case", CaseIdToHex(*id)}});
    }));

    Get("/v1/cases", CaseRoute("read", [this](const httplib::Request& req, httplib::Response& res,
                                                      const Caller&, AccessScope& scope) {
      Page page;
      if (!ParsePage(req, 'k', kMaxPageLimit, &page, res)) return;
      const bool by_label = req.has_param("label");
      const std::string label = req.get_param_value("label");
      auto cases = node->store().ListCases();  // by case id
      if (!cases.ok()) return SendStatusError(res, cases.status());
      std::vector<std::pair<std::string, json>> entries;
      int64_t now = NowMs();
      for (const CaseSummary& c : *cases) {
        if (by_label && c.label != label) continue;
        const std::string hex = CaseIdToHex(c.case_id);
        if (page.after && hex <= *page.after) continue;
        if (entries.size() > page.limit) break;  // one more than a page says whether there are more
        auto state = node->State(c.case_id);
        if (!state.ok()) continue;
        json e = {{"case", hex}, {"regie", state->Regie().org}, {"involved", state->Involved(now)}};
        if (!c.label.empty()) e["label"] = c.label;
        entries.emplace_back(hex, std::move(e));
      }
      std::optional<std::string> next;
      json list = TakePage(entries, Page{page.limit, std::nullopt}, 'k', &next);
      for (const json& e : list) scope.items.push_back(e["case"].get<std::string>());
      json body = {{"cases", list}};
      if (next) body["next_cursor"] = *next;
      SendJson(res, 200, body);
    }, {"label", "limit", "cursor"}));

    // One case: what the list says, and how much of its plan this organisation sees.
    Get(R"(/v1/cases/([0-9A-Za-z]+))", CaseRoute("read", [this](const httplib::Request& req, httplib::Response& res,
                                                               const Caller&, AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      scope.items.push_back(CaseIdToHex(case_id));
      auto state = node->State(case_id);
      if (!state.ok()) return SendStatusError(res, state.status());
      auto plan = node->ReadPlan(case_id);
      if (!plan.ok()) return SendStatusError(res, plan.status());
      const int64_t now = NowMs();
      int active = 0;
      for (const ConsentView& v : state->Consents(now)) active += v.status == ConsentStatus::kActive ? 1 : 0;
      json body = {{"case", CaseIdToHex(case_id)}, {"regie", state->Regie().org}, {"involved", state->Involved(now)},
                   {"regisseur", state->Regie().person.empty() ? json(nullptr) : json(state->Regie().person)},
                   {"counts", {{"items", plan->plan["items"].size()}, {"conflicts", plan->plan["conflicts"]},
                               {"consents", state->Consents(now).size()}, {"active_consents", active}}}};
      auto cases = node->store().ListCases();
      if (!cases.ok()) return SendStatusError(res, cases.status());
      for (const CaseSummary& c : *cases)
        if (c.case_id == case_id && !c.label.empty()) body["label"] = c.label;
      SendJson(res, 200, body);
    }));

    Post(R"(/v1/cases/([^/]+)/consents)", CaseRoute("consent-record", [this](const httplib::Request& req,
                                                                                   httplib::Response& res,
                                                                                   const Caller& caller,
                                                                                   AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto body = ParseBody(req, res);
      if (!body) return;
      if (!OnlyFields(*body, {"grantee", "domains", "purpose", "basis", "valid_from", "valid_until", "given_by", "evidence"}, res))
        return;
      ConsentInput in;
      if (!StringField(*body, "grantee", true, &in.grantee, res) || !StringField(*body, "purpose", true, &in.purpose, res) ||
          !StringField(*body, "basis", true, &in.basis, res) || !StringField(*body, "given_by", true, &in.given_by, res))
        return;
      auto domains = body->find("domains");
      if (domains == body->end() || !domains->is_array() || domains->empty())
        return SendError(res, 400, "invalid_argument", "'domains' must be a non-empty array of life domains or [\"*\"]");
      for (const json& d : *domains) {
        if (!d.is_string()) return SendError(res, 400, "invalid_argument", "'domains' must be an array of strings");
        in.domains.push_back(d.get<std::string>());
      }
      std::string from, until;
      if (!StringField(*body, "valid_from", true, &from, res) || !StringField(*body, "valid_until", false, &until, res)) return;
      auto from_ms = ParseIsoTime(from);
      if (!from_ms) return SendError(res, 400, "invalid_argument", "'valid_from' must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.sss]Z");
      in.valid_from_ms = *from_ms;
      if (!until.empty()) {
        auto until_ms = ParseIsoTime(until);
        if (!until_ms) return SendError(res, 400, "invalid_argument", "'valid_until' must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.sss]Z");
        in.valid_until_ms = *until_ms;
      }
      auto evidence = body->find("evidence");
      if (evidence == body->end() || !evidence->is_object())
        return SendError(res, 400, "invalid_argument", "'evidence' must be {\"kind\":\"attested\",\"reference\":...}");
      for (auto& [k, v] : evidence->items())
        if (k != "kind" && k != "reference") return SendError(res, 400, "unknown_field", "unknown field 'evidence." + k + "'");
      if (evidence->value("kind", "") != "attested")
        return SendError(res, 400, "invalid_argument", "'evidence.kind' must be \"attested\" (the citizen signs consent in the portal)");
      if (!StringField(*evidence, "reference", true, &in.evidence_reference, res)) return;
      auto id = node->RecordConsent(case_id, in);
      if (!id.ok()) return SendStatusError(res, id.status());
      scope.consent = ToHex(*id);
      scope.items.push_back(ToHex(*id));
      KRING_LOG(kInfo, "api", caller.client << " recorded consent for " << in.grantee);
      res.set_header("Location", "/v1/cases/" + CaseIdToHex(case_id) + "/consents/" + ToHex(*id));
      SendJson(res, 201, {{"consent", ToHex(*id)}});
    }));

    Post(R"(/v1/cases/([^/]+)/consents/([^/]+)/withdraw)", CaseRoute("consent-withdraw", [this](
        const httplib::Request& req, httplib::Response& res, const Caller& caller, AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      RecordId consent;
      if (!FromHex(std::string(req.matches[2]), consent))
        return SendError(res, 400, "invalid_argument", "consent id must be 64 hex characters");
      scope.consent = ToHex(consent);
      if (!req.body.empty()) {
        auto body = ParseBody(req, res);
        if (!body || !OnlyFields(*body, {}, res)) return;
      }
      auto id = node->WithdrawConsent(case_id, consent);
      if (!id.ok()) return SendStatusError(res, id.status());
      scope.items.push_back(ToHex(*id));
      KRING_LOG(kInfo, "api", caller.client << " withdrew consent " << ToHex(consent).substr(0, 16));
      SendJson(res, 200, {{"consent", ToHex(consent)}, {"status", "withdrawn"}, {"withdrawal", ToHex(*id)}});
    }));

    // A one-time code for the citizen to enrol a device in the portal (docs/citizen.md).
    Post(R"(/v1/cases/([^/]+)/citizen-invitations)", CaseRoute("create", [this](
        const httplib::Request& req, httplib::Response& res, const Caller& caller, AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto body = ParseBody(req, res);
      if (!body || !OnlyFields(*body, {"given_by"}, res)) return;
      std::string given_by;
      if (!StringField(*body, "given_by", true, &given_by, res)) return;
      auto inv = node->InviteCitizen(case_id, given_by);
      if (!inv.ok()) return SendStatusError(res, inv.status());
      scope.items.push_back("citizen-invitation:" + ToHex(inv->hash).substr(0, 16));
      KRING_LOG(kInfo, "api", caller.client << " invited the citizen of case " << CaseIdToHex(case_id));
      SendJson(res, 201, {{"code", inv->code}, {"expires", IsoTime(inv->expires_ms)}});
    }));

    Get(R"(/v1/cases/([^/]+)/citizen-keys)", CaseRoute("read", [this](
        const httplib::Request& req, httplib::Response& res, const Caller&, AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto state = node->State(case_id);
      if (!state.ok()) return SendStatusError(res, state.status());
      json list = json::array();
      for (const CitizenKeyView& k : state->CitizenKeys()) {
        json e = {{"key", ToHex(k.id)}, {"given_by", k.given_by}, {"enrolled", IsoTime(k.enrolled_ms)},
                  {"status", k.revoked_by ? "revoked" : "enrolled"}};
        if (k.revoked_by) e["revoked_by"] = ToHex(*k.revoked_by);
        list.push_back(std::move(e));
        scope.items.push_back(ToHex(k.id));
      }
      SendJson(res, 200, {{"case", CaseIdToHex(case_id)}, {"citizen_keys", list}});
    }));

    Post(R"(/v1/cases/([^/]+)/citizen-keys/([^/]+)/revoke)", CaseRoute("update", [this](
        const httplib::Request& req, httplib::Response& res, const Caller& caller, AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      RecordId key;
      if (!FromHex(std::string(req.matches[2]), key))
        return SendError(res, 400, "invalid_argument", "citizen key id must be 64 hex characters");
      auto body = ParseBody(req, res);
      if (!body || !OnlyFields(*body, {"reference"}, res)) return;
      std::string reference;
      if (!StringField(*body, "reference", true, &reference, res)) return;
      auto id = node->RevokeCitizenKey(case_id, key, reference);
      if (!id.ok()) return SendStatusError(res, id.status());
      scope.items = {ToHex(key), ToHex(*id)};
      KRING_LOG(kInfo, "api", caller.client << " revoked citizen key " << ToHex(key).substr(0, 16));
      SendJson(res, 200, {{"key", ToHex(key)}, {"status", "revoked"}, {"revocation", ToHex(*id)}});
    }));

    Get(R"(/v1/cases/([^/]+)/consents)", CaseRoute("read", [this](const httplib::Request& req,
                                                                         httplib::Response& res, const Caller&,
                                                                         AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      Page page;
      if (!ParsePage(req, 'n', kMaxPageLimit, &page, res)) return;
      auto state = node->State(case_id);
      if (!state.ok()) return SendStatusError(res, state.status());
      std::vector<std::pair<std::string, json>> entries;  // by (hlc, id), as Consents() gives them
      const Node::GranteeDirectory grantees = node->Grantees();
      for (const ConsentView& v : state->Consents(NowMs())) {
        if (!v.valid) continue;
        entries.emplace_back(SortableNumber(static_cast<int64_t>(v.grant->h.hlc)) + ToHex(v.id), ConsentJson(v, grantees));
      }
      std::optional<std::string> next;
      json list = TakePage(entries, page, 'n', &next);
      for (const json& e : list) scope.items.push_back(e["consent"].get<std::string>());
      json body = {{"case", CaseIdToHex(case_id)}, {"consents", list}};
      if (next) body["next_cursor"] = *next;
      // Evidence that an organisation signed two histories of the case: for
      // the regie organisation, who must act on it.
      if (state->Regie().org == node->identity().org) {
        auto forks = node->ForksOf(case_id);
        if (!forks.ok()) return SendStatusError(res, forks.status());
        json f = json::array();
        for (const Node::Fork& x : *forks)
          f.push_back({{"org", x.org}, {"record", ToHex(x.record)}, {"does_not_follow", ToHex(x.follows_not)},
                       {"seen", IsoTime(x.seen_ms)}});
        if (!f.empty()) body["forks"] = f;
      }
      SendJson(res, 200, body);
    }, {"limit", "cursor"}));

    Get(R"(/v1/cases/([^/]+)/consents/([0-9A-Za-z]+))", CaseRoute("read", [this](const httplib::Request& req,
                                                                                 httplib::Response& res, const Caller&,
                                                                                 AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      RecordId consent;
      if (!FromHex(std::string(req.matches[2]), consent))
        return SendError(res, 400, "invalid_argument", "consent id must be 64 hex characters");
      auto state = node->State(case_id);
      if (!state.ok()) return SendStatusError(res, state.status());
      for (const ConsentView& v : state->Consents(NowMs())) {
        if (v.id != consent) continue;
        scope.items.push_back(ToHex(v.id));
        return SendJson(res, 200, ConsentJson(v, node->Grantees()));
      }
      SendError(res, 404, "not_found", "the case has no consent " + ToHex(consent));
    }));

    Post(R"(/v1/cases/([^/]+)/items)", CaseRoute("create", [this](const httplib::Request& req,
                                                                         httplib::Response& res, const Caller& caller,
                                                                         AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto body = ParseBody(req, res);
      if (!body) return;
      if (!OnlyFields(*body, {"kind", "domain", "data", "supersedes"}, res)) return;
      ItemInput in;
      if (!StringField(*body, "kind", true, &in.kind, res) || !StringField(*body, "domain", false, &in.domain, res)) return;
      auto data = body->find("data");
      if (data == body->end() || !data->is_object()) return SendError(res, 400, "invalid_argument", "'data' (object) is required");
      in.data = *data;
      if (auto p = body->find("supersedes"); p != body->end()) {
        if (!p->is_array()) return SendError(res, 400, "invalid_argument", "'supersedes' must be an array of version ids");
        for (const json& e : *p) {
          FragmentId id;
          if (!e.is_string() || !FromHex(e.get<std::string>(), id))
            return SendError(res, 400, "invalid_argument", "each superseded version must be a 64-hex-character id");
          in.supersedes.push_back(id);
        }
      }
      if (req.has_header("If-Match")) {
        in.if_match = EtagValue(req.get_header_value("If-Match"));
        if (in.if_match.empty() || in.if_match.size() > 64)
          return SendError(res, 400, "invalid_header", "If-Match must be the item's ETag as GET .../items/{item} gave it");
      }
      auto written = node->WriteItem(case_id, in);
      if (!written.ok()) {
        if (written.status().code() == Status::Code::kFailedPrecondition)
          return SendError(res, 412, "precondition_failed", written.status().message());
        return SendStatusError(res, written.status());
      }
      scope.items.push_back(ToHex(written->version));
      KRING_LOG(kInfo, "api", caller.client << " wrote an item (kind " << in.kind << ") in case " << CaseIdToHex(case_id));
      json answer = {{"item", ToHex(written->item)}, {"version", ToHex(written->version)}};
      // Say so when everyone else who could read this domain was removed from the network.
      if (!in.domain.empty()) {
        if (auto state = node->State(case_id); state.ok()) {
          const std::set<std::string> removed = node->RemovedMembers();
          FragmentFacts written_facts;  // who consent/ lets read what we wrote in this domain
          written_facts.author = node->org();
          written_facts.domain = in.domain;
          std::set<std::string> readers, gone;
          for (const std::string& org : state->Readers(written_facts, NowMs())) {
            if (org == node->org()) continue;
            readers.insert(org);
            if (removed.count(org)) gone.insert(org);
          }
          if (!readers.empty() && gone == readers) {
            std::string names;
            for (const std::string& o : gone) names += (names.empty() ? "" : ", ") + o;
            answer["warnings"] = json::array({"the only organisation(s) with consent for " + in.domain + " (" + names +
                                              ") were removed from the network: nobody else receives this item"});
          }
        }
      }
      if (in.kind != "regisseur") {
        res.set_header("Location", "/v1/cases/" + CaseIdToHex(case_id) + "/items/" + ToHex(written->item));
        if (!written->etag.empty()) res.set_header("ETag", "\"" + written->etag + "\"");
        answer["conflict"] = written->conflict;
      } else {
        res.set_header("Location", "/v1/cases/" + CaseIdToHex(case_id));
      }
      SendJson(res, 201, answer);
    }));

    // One item: its current version (as in the plan) and every version this organisation may read.
    auto item_route = [this](bool fhir) {
      return CaseRoute("read", [this, fhir](const httplib::Request& req, httplib::Response& res, const Caller&,
                                           AccessScope& scope) {
        CaseId case_id;
        FragmentId item;
        if (fhir) {  // /fhir/Goal/{item}: the item names its case
          if (!FromHex(std::string(req.matches[1]), item))
            return SendError(res, 400, "invalid_argument", "a Goal id is a 64-hex-character item id");
          auto rec = node->store().GetRecord(item);
          if (!rec.ok()) return SendStatusError(res, rec.status());
          auto f = rec->has_value() ? DecodeFragmentRecord((*rec)->record) : Result<Fragment>(Status::NotFound(""));
          if (!f.ok() || f->header.kind.v != "goal") return SendError(res, 404, "not_found", "no goal " + ToHex(item));
          case_id = f->header.case_id;
        } else {
          if (!ParseCase(req.matches[1], &case_id, res)) return;
          if (!FromHex(std::string(req.matches[2]), item))
            return SendError(res, 400, "invalid_argument", "item id must be 64 hex characters");
        }
        scope.case_id = case_id;
        auto read = node->ReadItem(case_id, item);
        if (!read.ok()) return SendStatusError(res, read.status());
        scope.items = read->versions;
        scope.consent = Join(read->consents);
        res.set_header("ETag", "\"" + read->etag + "\"");
        if (!fhir) return SendJson(res, 200, read->item);
        if (read->item["current"].is_null()) return SendError(res, 404, "not_found", "goal " + ToHex(item) + " was deleted");
        res.status = 200;
        res.set_content(ToFhirGoal(case_id, read->item["current"], fhir_options()).dump(), "application/fhir+json");
      });
    };
    Get(R"(/v1/cases/([^/]+)/items/([0-9A-Za-z]+))", item_route(false));
    Get(R"(/fhir/Goal/([0-9A-Za-z]+))", item_route(true));

    // A consent as a FHIR Consent; the consent id names its case.
    Get(R"(/fhir/Consent/([0-9A-Za-z]+))", CaseRoute("read", [this](const httplib::Request& req, httplib::Response& res,
                                                                    const Caller&, AccessScope& scope) {
      RecordId consent;
      if (!FromHex(std::string(req.matches[1]), consent))
        return SendError(res, 400, "invalid_argument", "a Consent id is a 64-hex-character consent id");
      auto rec = node->store().GetRecord(consent);
      if (!rec.ok()) return SendStatusError(res, rec.status());
      if (!rec->has_value() || (*rec)->type != RecordType::kConsentGrant)
        return SendError(res, 404, "not_found", "no consent " + ToHex(consent));
      auto any = DecodeRecord((*rec)->record);
      if (!any.ok() || !std::holds_alternative<ControlRecord>(*any)) return SendError(res, 404, "not_found", "no consent");
      const CaseId case_id = std::get<ControlRecord>(*any).header().case_id;
      scope.case_id = case_id;
      auto state = node->State(case_id);
      if (!state.ok()) return SendStatusError(res, state.status());
      for (const ConsentView& v : state->Consents(NowMs())) {
        if (v.id != consent) continue;
        scope.items.push_back(ToHex(v.id));
        json view = ConsentJson(v, node->Grantees());
        view["updated"] = view["recorded"];
        view["version"] = ToHex(v.id);
        if (v.withdrawn_by) {  // the withdrawal is the consent's newest version
          auto w = node->store().GetRecord(*v.withdrawn_by);
          if (w.ok() && w->has_value()) view["updated"] = IsoTime(static_cast<int64_t>(HlcMillis((*w)->hlc)));
          view["version"] = ToHex(*v.withdrawn_by);
        }
        res.status = 200;
        res.set_content(ToFhirConsent(case_id, view, fhir_options()).dump(), "application/fhir+json");
        return;
      }
      SendError(res, 404, "not_found", "no consent " + ToHex(consent));
    }));

    Get("/fhir/metadata", [this](const httplib::Request& req, httplib::Response& res) {
      if (!OnlyParams(req, {}, res)) return;
      res.set_content(FhirCapabilityStatement(fhir_options(), kVersion).dump(), "application/fhir+json");
    });

    // The change feed, for a system that follows what changed instead of polling every plan.
    Get("/v1/changes", [this](const httplib::Request& req, httplib::Response& res) { Changes(req, res); });

    // The plan, as JSON or as a FHIR CarePlan: the same read, the same access-log entry.
    auto plan_route = [this](bool fhir) {
      return CaseRoute("read", [this, fhir](const httplib::Request& req, httplib::Response& res, const Caller&,
                                           AccessScope& scope) {
        CaseId case_id;
        if (!ParseCase(req.matches[1], &case_id, res)) return;
        scope.case_id = case_id;
        auto plan = node->ReadPlan(case_id);
        if (!plan.ok()) return SendStatusError(res, plan.status());
        scope.consent = Join(plan->consents);
        if (fhir) {
          scope.items = plan->versions;
          res.status = 200;
          res.set_content(ToFhirCarePlan(case_id, plan->plan, fhir_options()).dump(), "application/fhir+json");
          return;
        }
        Page page;
        if (!ParsePage(req, 'p', kMaxPageLimit, &page, res)) return;
        json& items = plan->plan["items"];
        if (page.after || items.size() > page.limit) {
          // Paged by (kind, created, item): the plan's own order up to ties within a millisecond.
          std::vector<std::pair<std::string, json>> entries;
          for (json& i : items) {
            size_t rank = std::find(std::begin(kItemKinds), std::end(kItemKinds), i.value("kind", "")) - std::begin(kItemKinds);
            entries.emplace_back(SortableNumber(static_cast<int64_t>(rank)) + i.value("created", "") + i.value("item", ""),
                                 std::move(i));
          }
          std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
          std::optional<std::string> next;
          items = TakePage(entries, page, 'p', &next);
          if (next) plan->plan["next_cursor"] = *next;
        }
        for (const json& i : items) {  // the access log names what was shown
          scope.items.push_back(i["version"].get<std::string>());
          for (const json& c : i["conflicts"]) scope.items.push_back(c["version"].get<std::string>());
        }
        SendJson(res, 200, plan->plan);
      }, fhir ? std::initializer_list<const char*>{} : std::initializer_list<const char*>{"limit", "cursor"});
    };
    Get(R"(/v1/cases/([^/]+)/plan)", plan_route(false));
    Get(R"(/fhir/CarePlan/([^/]+))", plan_route(true));

    Get(R"(/v1/cases/([^/]+)/access-log)", CaseRoute("read", [this](const httplib::Request& req,
                                                                           httplib::Response& res, const Caller&,
                                                                           AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      scope.items.push_back("access-log");
      int64_t from = 0, to = std::numeric_limits<int64_t>::max();
      for (auto [name, out] : {std::pair{"from", &from}, std::pair{"to", &to}}) {
        if (!req.has_param(name)) continue;
        auto t = ParseIsoTime(req.get_param_value(name));
        if (!t) return SendError(res, 400, "invalid_argument", std::string("'") + name + "' must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.sss]Z");
        *out = *t;
      }
      Page page;
      if (!ParsePage(req, 'a', kMaxPageLimit, &page, res)) return;
      auto entries = node->AccessLogOf(case_id, from, to);
      if (!entries.ok()) return SendStatusError(res, entries.status());
      std::vector<std::pair<std::string, json>> sorted;  // by (time, event): new entries never land before a cursor's
      for (const AccessEntry& e : *entries) {
        json j = AccessEntryToJson(e);
        sorted.emplace_back(SortableNumber(e.time_ms) + ToHex(e.event_id), std::move(j));
      }
      std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      std::optional<std::string> next;
      json body = {{"case", CaseIdToHex(case_id)}, {"entries", TakePage(sorted, page, 'a', &next)}};
      if (next) body["next_cursor"] = *next;
      SendJson(res, 200, body);
    }, {"from", "to", "limit", "cursor"}));


    // --- the end of a case (docs/retention.md) ---
    Post(R"(/v1/cases/([^/]+)/close)", CaseRoute("update", [this](const httplib::Request& req,
                                                                        httplib::Response& res, const Caller& caller,
                                                                        AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto body = ParseBody(req, res);
      if (!body || !OnlyFields(*body, {"reason", "basis"}, res)) return;
      std::string reason, basis;
      if (!StringField(*body, "reason", true, &reason, res) || !StringField(*body, "basis", false, &basis, res)) return;
      auto id = node->CloseCase(case_id, reason, basis);
      if (!id.ok()) return SendStatusError(res, id.status());
      scope.items = {"close", ToHex(*id)};
      KRING_LOG(kInfo, "api", caller.client << " closed case " << CaseIdToHex(case_id) << " (" << reason << ")");
      auto state = node->State(case_id);
      if (!state.ok()) return SendStatusError(res, state.status());
      SendJson(res, 200, {{"case", CaseIdToHex(case_id)}, {"status", PlanStatusOf(state->Closure())},
                          {"closed", ClosureToJson(state->Closure())}});
    }));

    Post(R"(/v1/cases/([^/]+)/reopen)", CaseRoute("update", [this](const httplib::Request& req,
                                                                         httplib::Response& res, const Caller& caller,
                                                                         AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto body = ParseBody(req, res);
      if (!body || !OnlyFields(*body, {"reason"}, res)) return;
      std::string reason;
      if (!StringField(*body, "reason", false, &reason, res)) return;
      auto id = node->ReopenCase(case_id, reason);
      if (!id.ok()) return SendStatusError(res, id.status());
      scope.items = {"reopen", ToHex(*id)};
      KRING_LOG(kInfo, "api", caller.client << " reopened case " << CaseIdToHex(case_id));
      SendJson(res, 200, {{"case", CaseIdToHex(case_id)}, {"status", "active"}, {"reopened", ToHex(*id)}});
    }));

    Post(R"(/v1/cases/([^/]+)/hold)", CaseRoute("update", [this](const httplib::Request& req,
                                                                       httplib::Response& res, const Caller& caller,
                                                                       AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto body = ParseBody(req, res);
      if (!body || !OnlyFields(*body, {"reason"}, res)) return;
      std::string reason;
      if (!StringField(*body, "reason", true, &reason, res)) return;
      Status st = node->PutHold(case_id, reason);
      if (!st.ok()) return SendStatusError(res, st);
      scope.items = {"legal-hold"};
      KRING_LOG(kInfo, "api", caller.client << " put case " << CaseIdToHex(case_id) << " on legal hold");
      auto hold = node->HoldOf(case_id);
      if (!hold.ok() || !hold->has_value()) return SendStatusError(res, hold.ok() ? Status::NotFound("hold lifted meanwhile") : hold.status());
      SendJson(res, 201, {{"case", CaseIdToHex(case_id)}, {"hold", {{"since", IsoTime((*hold)->since_ms)}, {"reason", (*hold)->reason}}}});
    }));

    Delete(R"(/v1/cases/([^/]+)/hold)", CaseRoute("update", [this](const httplib::Request& req,
                                                                         httplib::Response& res, const Caller& caller,
                                                                         AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      Status st = node->LiftHold(case_id);
      if (!st.ok()) return SendStatusError(res, st);
      scope.items = {"legal-hold-lifted"};
      KRING_LOG(kInfo, "api", caller.client << " lifted the legal hold on case " << CaseIdToHex(case_id));
      SendJson(res, 200, {{"case", CaseIdToHex(case_id)}, {"hold", nullptr}});
    }));

    Post(R"(/v1/cases/([^/]+)/erasure-requests)", CaseRoute("update", [this](const httplib::Request& req,
                                                                                   httplib::Response& res, const Caller& caller,
                                                                                   AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto body = ParseBody(req, res);
      if (!body || !OnlyFields(*body, {"reference"}, res)) return;
      std::string reference;
      if (!StringField(*body, "reference", true, &reference, res)) return;
      auto id = node->RequestErasure(case_id, reference);
      if (!id.ok()) return SendStatusError(res, id.status());
      scope.items = {"erasure-request", ToHex(*id)};
      KRING_LOG(kInfo, "api", caller.client << " recorded an erasure request in case " << CaseIdToHex(case_id));
      auto status = node->ErasureStatus(case_id);
      if (!status.ok()) return SendStatusError(res, status.status());
      for (const json& r : (*status)["requests"])
        if (r["request"] == ToHex(*id)) return SendJson(res, 201, json{{"case", CaseIdToHex(case_id)}, {"request", r}});
      SendStatusError(res, Status::IOError("the erasure request was recorded but cannot be read back"));
    }));

    Get(R"(/v1/cases/([^/]+)/erasure-requests)", CaseRoute("read", [this](const httplib::Request& req,
                                                                                httplib::Response& res, const Caller&,
                                                                                AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      scope.items = {"erasure-requests"};
      auto status = node->ErasureStatus(case_id);
      if (!status.ok()) return SendStatusError(res, status.status());
      SendJson(res, 200, *status);
    }));

    Get(R"(/v1/cases/([^/]+)/export)", CaseRoute("export", [this](const httplib::Request& req,
                                                                        httplib::Response& res, const Caller& caller,
                                                                        AccessScope& scope) {
      CaseId case_id;
      if (!ParseCase(req.matches[1], &case_id, res)) return;
      scope.case_id = case_id;
      auto doc = node->ExportCase(case_id);
      if (!doc.ok()) return SendStatusError(res, doc.status());
      scope.items.push_back("export");
      for (const json& item : (*doc)["plan"]["items"]) scope.items.push_back(item["version"].get<std::string>());
      KRING_LOG(kInfo, "api", caller.client << " exported case " << CaseIdToHex(case_id));
      SendJson(res, 200, *doc);
    }));

    server->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404) {
        // A path the API serves, asked with another method: 405 and the methods it takes.
        std::string allow;
        for (const char* m : {"GET", "POST", "DELETE"})
          for (const auto& [method, pattern] : routes)
            if (method == m && std::regex_match(req.path, pattern) && allow.find(m) == std::string::npos)
              allow += (allow.empty() ? "" : ", ") + method;
        if (!allow.empty()) {
          res.set_header("Allow", allow);
          return SendError(res, 405, "method_not_allowed", req.method.substr(0, 16) + " is not allowed here; use " + allow);
        }
      }
      if (res.status == 404) SendError(res, 404, "not_found", "no such endpoint");
      else if (res.status == 413) SendError(res, 413, "too_large", "request body too large");
      else SendError(res, res.status, "http_error", "HTTP error " + std::to_string(res.status));
    });
    server->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
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

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

Result<std::unique_ptr<ApiListener>> NewListener(const ApiOptions& options, const std::string& what) {
  const bool tls = !options.tls_cert.empty() || !options.tls_key.empty();
  if (tls && (options.tls_cert.empty() || options.tls_key.empty()))
    return Status::InvalidArgument("TLS needs both --tls-cert and --tls-key");
  if (!tls && !IsLoopbackHost(options.host))
    return Status::InvalidArgument(what + " binds beyond loopback ('" + options.host +
                                   "') only with TLS: give --tls-cert and --tls-key");
  auto listener = std::make_unique<ApiListener>();
  if (tls) {
    for (const std::string* f : {&options.tls_cert, &options.tls_key})
      if (::access(f->c_str(), R_OK) != 0) return Status::NotFound("cannot read TLS file " + *f);
    KRING_RETURN_IF_ERROR(listener->UseTls(options.tls_cert, options.tls_key));
  }
  return listener;
}

Status ApiServer::Start(const ApiOptions& options) {
  const bool tls = !options.tls_cert.empty() || !options.tls_key.empty();
  {
    auto listener = NewListener(options, "the API");
    if (!listener.ok()) return listener.status();
    impl_->listener = listener->get();
    impl_->server = std::move(*listener);
  }
  impl_->fhir.base_uri = options.fhir_base_uri;
  impl_->Configure();
  httplib::Server& server = *impl_->server;
  if (!server.bind_to_port(options.host, options.port))
    return Status::IOError("cannot bind the API to " + options.host + ":" + std::to_string(options.port) + " (in use?)");
  impl_->listener->RaiseListenBacklog(SOMAXCONN);
  impl_->tls = tls;
  impl_->thread = std::thread([this] { impl_->server->listen_after_bind(); });
  return Status::Ok();
}

bool ApiServer::tls() const { return impl_->tls; }

void ApiServer::ServeSocket(int fd) {
  if (!impl_->server) {
    auto listener = std::make_unique<ApiListener>();
    impl_->listener = listener.get();
    impl_->server = std::move(listener);
    impl_->Configure();
  }
  if (impl_->listener) impl_->listener->ServeSocket(fd);
}

void ApiServer::Stop() {
  impl_->node->store().CancelWaits();  // a waiting change-feed call answers now, not in a minute
  if (impl_->thread.joinable()) {
    impl_->server->stop();
    impl_->thread.join();
  }
  if (impl_->listener) impl_->listener->Shutdown();
}

}  // namespace kring
