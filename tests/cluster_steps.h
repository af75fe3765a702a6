// Steps the multi-process tests share: open a case, grant consent, write and read plan items through a node's API.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sqlite3.h>
#include <zmq.hpp>

#include "examples/cluster.h"
#include "crypto/identity.h"
#include "protocol/card.h"
#include "protocol/messages.h"

namespace kring::steps {

using nlohmann::json;

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True when `needle` occurs in any of the node's database files (main, WAL, SHM).
inline bool DatabaseContains(LocalCluster& c, const std::string& org, const std::string& needle) {
  std::string base = c.node(org).data_dir + "/kring.db";
  for (const char* suffix : {"", "-wal", "-shm"})
    if (Slurp(base + suffix).find(needle) != std::string::npos) return true;
  return false;
}

// Pushes `records` to `to`'s node as `as`, with `as`'s real keys, bypassing
// its API: what a partner that modified its own node could send.
// Several pushes over one connection (a node serves one connection per
// partner key at a time: a new one replaces the older).
inline void PushesAs(LocalCluster& c, const std::string& as, const std::string& to,
                     const std::vector<std::vector<Bytes>>& pushes) {
  auto me = ReadKeyFile(c.node(as).data_dir + "/node.key");
  REQUIRE(me.ok());
  BoxPublicKey server_key;
  REQUIRE(FromHex(json::parse(c.node(to).card)["transport_key"].get<std::string>(), server_key));
  zmq::context_t ctx;
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::curve_serverkey, zmq::const_buffer(server_key.data(), server_key.size()));
  dealer.set(zmq::sockopt::curve_publickey, zmq::const_buffer(me->pub.transport_pk.data(), 32));
  dealer.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(me->transport_sk.data(), 32));
  dealer.set(zmq::sockopt::linger, 2000);
  dealer.connect(c.node(to).listen());
  for (const std::vector<Bytes>& records : pushes) {
    PushMessage push;
    for (const Bytes& r : records) push.records.v.push_back({r});
    Bytes frame = EncodeMessage(Message(push));
    dealer.send(zmq::buffer(frame));
  }
}

inline void PushAs(LocalCluster& c, const std::string& as, const std::string& to, const std::vector<Bytes>& records) {
  PushesAs(c, as, to, {records});
}

// The value of kring_messages_rejected_total{reason} on a node's /metrics (0 if absent).
inline long Rejected(LocalCluster& c, const std::string& org, const std::string& reason) {
  std::string raw = c.Raw(org, "GET", "/metrics", "", {}).raw;
  std::string key = "kring_messages_rejected_total{reason=\"" + reason + "\"} ";
  auto at = raw.find(key);
  return at == std::string::npos ? 0 : std::stol(raw.substr(at + key.size()));
}

inline std::string CreateCase(LocalCluster& c, const std::string& org, const std::string& label = "test household") {
  auto r = c.Call(org, "POST", "/v1/cases", json{{"label", label}});
  return r.status == 201 ? r.body["case"].get<std::string>() : std::string();
}

inline std::string IsoAfterSeconds(int seconds) {
  std::time_t t = std::time(nullptr) + seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

inline HttpReply GrantReply(LocalCluster& c, const std::string& regie, const std::string& case_id,
                            const std::string& grantee, const std::vector<std::string>& domains,
                            const std::string& valid_until = "") {
  json body = {{"grantee", grantee},
               {"domains", domains},
               {"purpose", "ondersteuning bij " + (domains.empty() ? std::string("?") : domains[0])},
               {"basis", "Wmo 2015 art. 5.1.1"},
               {"valid_from", "2020-01-01"},
               {"given_by", "burger"},
               {"evidence", {{"kind", "attested"}, {"reference", "formulier-2026-114"}}}};
  if (!valid_until.empty()) body["valid_until"] = valid_until;
  return c.Call(regie, "POST", "/v1/cases/" + case_id + "/consents", body);
}

inline std::string Grant(LocalCluster& c, const std::string& regie, const std::string& case_id,
                         const std::string& grantee, const std::vector<std::string>& domains,
                         const std::string& valid_until = "") {
  auto r = GrantReply(c, regie, case_id, grantee, domains, valid_until);
  return r.status == 201 ? r.body["consent"].get<std::string>() : std::string();
}

inline HttpReply Withdraw(LocalCluster& c, const std::string& org, const std::string& case_id, const std::string& consent) {
  return c.Call(org, "POST", "/v1/cases/" + case_id + "/consents/" + consent + "/withdraw");
}

// A note item in `domain`; returns the reply ({"item","version"} on 201).
inline HttpReply Note(LocalCluster& c, const std::string& org, const std::string& case_id, const std::string& domain,
                      const std::string& text, const std::vector<std::string>& supersedes = {}) {
  json body = {{"kind", "note"}, {"data", {{"text", text}}}};
  if (!domain.empty()) body["domain"] = domain;
  if (!supersedes.empty()) body["supersedes"] = supersedes;
  return c.Call(org, "POST", "/v1/cases/" + case_id + "/items", body);
}

inline json Plan(LocalCluster& c, const std::string& org, const std::string& case_id) {
  auto r = c.Call(org, "GET", "/v1/cases/" + case_id + "/plan");
  return r.status == 200 ? r.body : json();
}

inline size_t PlanItems(LocalCluster& c, const std::string& org, const std::string& case_id) {
  json p = Plan(c, org, case_id);
  return p.is_object() && p.contains("items") ? p["items"].size() : 0;
}

// Fragments of any case held in the node's database, read from the file itself.
inline std::vector<std::string> HeldFragmentDomains(LocalCluster& c, const std::string& org) {
  std::vector<std::string> out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2((c.node(org).data_dir + "/kring.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return out;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT domain FROM records WHERE type = 1 ORDER BY domain", -1, &st, nullptr);
  while (sqlite3_step(st) == SQLITE_ROW) out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

inline size_t HeldFragments(LocalCluster& c, const std::string& org) { return HeldFragmentDomains(c, org).size(); }

// Records of one type (protocol/messages.h RecordType) in the node's database file.
// Records of `type` in the node's database; every record when type < 0.
inline int HeldRecordsOfType(LocalCluster& c, const std::string& org, int type) {
  sqlite3* db = nullptr;
  int n = -1;
  if (sqlite3_open_v2((c.node(org).data_dir + "/kring.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM records WHERE type = ?1 OR ?1 < 0", -1, &st, nullptr);
    sqlite3_bind_int(st, 1, type);
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

// Waits until each of `orgs` knows the case and has as many consents as `regie` (all synced).
inline bool AwaitCase(LocalCluster& c, const std::string& regie, const std::vector<std::string>& orgs,
                      const std::string& case_id, int timeout_ms = 5000) {
  auto count = [&](const std::string& org) -> int {
    auto r = c.Call(org, "GET", "/v1/cases/" + case_id + "/consents");
    return r.status == 200 ? static_cast<int>(r.body["consents"].size()) : -1;
  };
  int want = count(regie);
  return LocalCluster::WaitFor([&] {
    for (const std::string& o : orgs)
      if (count(o) != want) return false;
    return true;
  }, timeout_ms);
}

inline bool Connected(LocalCluster& c, const std::string& org, const std::string& peer) {
  auto r = c.Call(org, "GET", "/v1/health");
  if (r.status != 200) return false;
  for (auto& p : r.body["peers"])
    if (p["org"] == peer) return p["connected"].get<bool>();
  return false;
}

}  // namespace kring::steps
