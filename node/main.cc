// kring-node: the command line for partner IT teams (init, card, peer, token, run).
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "node/api.h"
#include "node/portal.h"
#include "node/log.h"
#include "node/node.h"
#include "protocol/card.h"

namespace kring {
namespace {

int Fail(const Status& st) {
  std::cerr << "kring-node: " << st.message() << "\n";
  return 1;
}

int64_t NowMs() { return static_cast<int64_t>(HybridClock::SystemMillis()); }

Result<std::unique_ptr<Store>> OpenStoreOf(const std::string& dir) {
  // Commands that change the partner list or tokens need the node to exist,
  // but not its secret keys; checking the key file catches a wrong --data.
  auto id = ReadKeyFile(KeyFilePath(dir));
  if (!id.ok()) return id.status();
  return Store::Open(DatabasePath(dir));
}

bool SplitHostPort(const std::string& s, std::string* host, int* port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *host = s.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  try {
    size_t used = 0;
    *port = std::stoi(s.substr(colon + 1), &used);
    return used == s.size() - colon - 1 && *port > 0 && *port < 65536;
  } catch (...) {
    return false;
  }
}

int Run(const std::string& dir, const std::string& listen, const std::string& api, int sync_interval_ms,
        const std::string& tls_cert, const std::string& tls_key, const std::string& portal) {
  ApiOptions api_options;
  api_options.tls_cert = tls_cert;
  api_options.tls_key = tls_key;
  if (!SplitHostPort(api, &api_options.host, &api_options.port))
    return Fail(Status::InvalidArgument("--api '" + api + "' must be HOST:PORT"));
  ApiOptions portal_options = api_options;
  if (!portal.empty() && !SplitHostPort(portal, &portal_options.host, &portal_options.port))
    return Fail(Status::InvalidArgument("--portal '" + portal + "' must be HOST:PORT"));

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto node = Node::Open(dir);
  if (!node.ok()) return Fail(node.status());
  const PublicIdentity& me = (*node)->identity();
  SyncOptions sync;
  sync.listen = listen;
  sync.anti_entropy_interval_ms = sync_interval_ms;
  Status st = (*node)->StartSync(sync);
  if (!st.ok()) return Fail(st);
  ApiServer server(node->get());
  st = server.Start(api_options);
  if (!st.ok()) {
    (*node)->Stop();
    return Fail(st);
  }
  PortalServer portal_server(node->get());
  if (!portal.empty()) {
    st = portal_server.Start(portal_options);
    if (!st.ok()) {
      server.Stop();
      (*node)->Stop();
      return Fail(st);
    }
    KRING_LOG(kInfo, "node", "citizen portal on " << (portal_server.tls() ? "https://" : "http://") << portal);
  }
  auto count = (*node)->store().CountFragments();
  KRING_LOG(kInfo, "node", "kring-node " << kVersion << " running as " << me.org << " (" << me.display_name
                                         << "); sync on " << listen << ", API on " << (server.tls() ? "https://" : "http://") << api
                                         << (server.tls() ? " (TLS)" : " (plain HTTP, loopback only)") << "; "
                                         << (count.ok() ? *count : 0) << " fragment(s) stored");
  int sig = 0;
  sigwait(&stop_signals, &sig);
  KRING_LOG(kInfo, "node", "received " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ", stopping");
  portal_server.Stop();
  server.Stop();
  (*node)->Stop();
  KRING_LOG(kInfo, "node", "stopped cleanly");
  return 0;
}

int Main(int argc, char** argv) {
  InitSodium();
  if (const char* lvl = std::getenv("KRING_LOG")) {
    std::string l = lvl;
    if (l == "debug") SetLogLevel(LogLevel::kDebug);
    else if (l == "warn") SetLogLevel(LogLevel::kWarn);
    else if (l == "error") SetLogLevel(LogLevel::kError);
  }

  CLI::App app{"kring-node: a partner organisation's node in a kring network.\n"
               "Shares one household plan as signed, end-to-end encrypted fragments with partner nodes."};
  app.require_subcommand(1);
  std::string dir;

  auto* init = app.add_subcommand("init", "Create a node: keys (owner-only key file) and database; prints its identity card");
  std::string org, name;
  init->add_option("--data", dir, "Data directory for this node (created, mode 0700)")->required();
  init->add_option("--org", org, "Organisation id, a slug [a-z0-9-]{2,64}, e.g. gemeente-deventer")->required();
  init->add_option("--name", name, "Display name, e.g. \"Gemeente Deventer\"")->required();

  auto* card = app.add_subcommand("card", "Print this node's identity card (JSON) to give to partners");
  card->add_option("--data", dir, "Data directory of the node")->required();

  auto* peer = app.add_subcommand("peer", "Manage the partner organisations this node trusts");
  peer->require_subcommand(1);
  auto* peer_add = peer->add_subcommand("add", "Trust a partner: its identity card and where its node listens");
  std::string card_file, endpoint;
  peer_add->add_option("--data", dir, "Data directory of the node")->required();
  peer_add->add_option("--card", card_file, "The partner's identity card (JSON file, '-' for stdin)")->required();
  peer_add->add_option("--endpoint", endpoint, "The partner node's sync address, tcp://HOST:PORT")->required();
  auto* peer_remove = peer->add_subcommand("remove", "Stop trusting a partner; a running node cuts it off at once");
  peer_remove->add_option("--data", dir, "Data directory of the node")->required();
  peer_remove->add_option("--org", org, "The partner's organisation id")->required();
  auto* peer_list = peer->add_subcommand("list", "List trusted partners");
  peer_list->add_option("--data", dir, "Data directory of the node")->required();
  bool peer_json = false;
  peer_list->add_flag("--json", peer_json, "Print JSON instead of a table");

  auto* token = app.add_subcommand("token", "Issue or revoke an API token for a client system (case-management system)");
  std::string client, revoke;
  token->add_option("--data", dir, "Data directory of the node")->required();
  auto* client_opt = token->add_option("--client", client, "Client system name to issue a token for; the token is printed once");
  auto* revoke_opt = token->add_option("--revoke", revoke, "Client system name whose token to revoke (also on a running node)");
  client_opt->excludes(revoke_opt);
  revoke_opt->excludes(client_opt);

  auto* audit = app.add_subcommand("audit", "Check this node's NEN 7513 access log");
  audit->require_subcommand(1);
  auto* audit_verify = audit->add_subcommand("verify", "Verify the access log's hash chain; names the first broken entry");
  audit_verify->add_option("--data", dir, "Data directory of the node")->required();

  auto* run = app.add_subcommand("run", "Run the node in the foreground; logs to stderr; stops on SIGTERM/SIGINT");
  std::string listen = "tcp://127.0.0.1:7400", api = "127.0.0.1:7480";
  int sync_interval_ms = 1000;
  run->add_option("--data", dir, "Data directory of the node")->required();
  run->add_option("--listen", listen, "Sync address partners connect to, tcp://HOST:PORT")->capture_default_str();
  run->add_option("--api", api, "Local API address HOST:PORT (beyond loopback only with TLS)")->capture_default_str();
  std::string tls_cert, tls_key;
  run->add_option("--tls-cert", tls_cert, "PEM certificate (chain) for the API; with --tls-key the API speaks HTTPS");
  run->add_option("--tls-key", tls_key, "PEM private key for --tls-cert");
  std::string portal;
  run->add_option("--portal", portal, "Serve the citizen's portal on HOST:PORT (beyond loopback only with TLS, the same --tls-cert/--tls-key)");
  run->add_option("--sync-interval-ms", sync_interval_ms, "Milliseconds between reconciliation rounds with each partner")
      ->check(CLI::Range(50, 600000))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*init) {
    auto pub = InitNode(dir, org, name);
    if (!pub.ok()) return Fail(pub.status());
    std::cout << CardToJson(*pub) << "\n";
    std::cerr << "kring-node: created node " << org << " in " << dir << "; give the card above to your partners\n";
    return 0;
  }
  if (*card) {
    auto id = ReadKeyFile(KeyFilePath(dir));
    if (!id.ok()) return Fail(id.status());
    std::cout << CardToJson(id->pub) << "\n";
    return 0;
  }
  if (*peer_add) {
    std::string text;
    if (card_file == "-") {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      text = ss.str();
    } else {
      std::ifstream in(card_file, std::ios::binary);
      if (!in) return Fail(Status::NotFound("cannot read card file " + card_file));
      text.assign(std::istreambuf_iterator<char>(in), {});
    }
    auto pub = CardFromJson(text);
    if (!pub.ok()) return Fail(pub.status());
    if (endpoint.rfind("tcp://", 0) != 0) return Fail(Status::InvalidArgument("--endpoint must be tcp://HOST:PORT"));
    auto me = ReadKeyFile(KeyFilePath(dir));
    if (!me.ok()) return Fail(me.status());
    if (pub->org == me->pub.org) return Fail(Status::InvalidArgument("that is this node's own card"));
    auto store = Store::Open(DatabasePath(dir));
    if (!store.ok()) return Fail(store.status());
    Status st = (*store)->AddPartner(Partner{*pub, endpoint, NowMs()});
    if (!st.ok()) return Fail(st);
    std::cerr << "kring-node: " << pub->org << " (" << pub->display_name << ") is now a partner at " << endpoint << "\n";
    return 0;
  }
  if (*peer_remove) {
    auto store = OpenStoreOf(dir);
    if (!store.ok()) return Fail(store.status());
    Status st = (*store)->RemovePartner(org);
    if (!st.ok()) return Fail(st);
    std::cerr << "kring-node: " << org << " is no longer a partner\n";
    return 0;
  }
  if (*peer_list) {
    auto store = OpenStoreOf(dir);
    if (!store.ok()) return Fail(store.status());
    auto list = (*store)->ListPartners();
    if (!list.ok()) return Fail(list.status());
    if (peer_json) {
      std::cout << "[";
      for (size_t i = 0; i < list->size(); ++i) {
        const Partner& p = (*list)[i];
        std::cout << (i ? "," : "") << "{\"card\":" << CardToJson(p.identity, -1) << ",\"endpoint\":\"" << p.endpoint << "\"}";
      }
      std::cout << "]\n";
    } else {
      std::printf("%-24s %-32s %s\n", "ORG", "NAME", "ENDPOINT");
      for (const Partner& p : *list)
        std::printf("%-24s %-32s %s\n", p.identity.org.c_str(), p.identity.display_name.c_str(), p.endpoint.c_str());
    }
    return 0;
  }
  if (*token) {
    auto store = OpenStoreOf(dir);
    if (!store.ok()) return Fail(store.status());
    if (!revoke.empty()) {
      Status st = (*store)->RevokeToken(revoke, NowMs());
      if (!st.ok()) return Fail(st);
      std::cerr << "kring-node: token of " << revoke << " revoked\n";
      return 0;
    }
    if (client.empty()) return Fail(Status::InvalidArgument("give --client NAME to issue a token or --revoke NAME to end one"));
    if (!IsValidOrgSlug(client)) return Fail(Status::InvalidArgument("--client must be a slug [a-z0-9-]{2,64}"));
    std::string t = NewApiToken();
    Status st = (*store)->AddToken(client, HashApiToken(t), NowMs());
    if (!st.ok()) return Fail(st);
    std::cout << t << "\n";
    sodium_memzero(t.data(), t.size());
    return 0;
  }
  if (*audit_verify) {
    auto store = OpenStoreOf(dir);
    if (!store.ok()) return Fail(store.status());
    auto report = (*store)->VerifyAccessLog();
    if (!report.ok()) return Fail(report.status());
    if (report->first_broken_seq != 0) {
      std::cout << "access log BROKEN at entry " << report->first_broken_seq << ": " << report->reason << "\n";
      return 1;
    }
    std::cout << "access log ok: " << report->entries << " entries, hash chain intact\n";
    return 0;
  }
  if (*run) return Run(dir, listen, api, sync_interval_ms, tls_cert, tls_key, portal);
  return 2;
}

}  // namespace
}  // namespace kring

int main(int argc, char** argv) { return kring::Main(argc, argv); }
