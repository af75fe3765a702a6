// kring-node: the command line for partner IT teams (init, card, peer, network, keys, token, audit, backup, restore, retention, export, run).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "node/api.h"
#include "node/backup.h"
#include "node/checkpoint.h"
#include "node/data_dir.h"
#include "node/portal.h"
#include "node/sync.h"
#include "node/retention.h"
#include "node/log.h"
#include "node/network_cli.h"
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

// The configuration file (TOML, read by CLI11's own parser): `data` at the
// top level applies to whichever command runs; a section such as [run]
// holds that command's options and is ignored by the others. Unknown keys
// are errors (CLI11 reports them), so a typo does not go unnoticed.
class CommandConfig : public CLI::ConfigTOML {
 public:
  explicit CommandConfig(const CLI::App* app) : app_(app) {}
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<std::string> path;  // the command being run, e.g. {"peer", "add"}
    for (const CLI::App* a = app_;;) {
      auto subs = a->get_subcommands();
      if (subs.empty()) break;
      a = subs.front();
      path.push_back(a->get_name());
    }
    std::vector<CLI::ConfigItem> out;
    for (CLI::ConfigItem& item : CLI::ConfigTOML::from_config(input)) {
      if (item.parents.empty()) {
        if (item.name == "data") item.parents = path;
        out.push_back(std::move(item));
      } else if (item.parents.size() <= path.size() && std::equal(item.parents.begin(), item.parents.end(), path.begin())) {
        out.push_back(std::move(item));
      }  // another command's section
    }
    return out;
  }

 private:
  const CLI::App* app_;
};

// "--data" -> "KRING_DATA".
std::string EnvName(const std::string& long_name) {
  std::string env = "KRING_";
  for (char c : long_name) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return env;
}

bool GivenOnCommandLine(int argc, char** argv, const std::string& flag) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == flag || a.rfind(flag + "=", 0) == 0) return true;
  }
  return false;
}

// Precedence is flags, then KRING_* environment variables, then the file.
// Not CLI11's envname(): version 2.1 lets the file win over the environment,
// and fills the environment into every command's options, which here share
// their variables. So after parsing, each option of the command being run
// that has a variable set and was not given as a flag takes its value.
void ApplyEnvironment(CLI::App* app, const std::map<const CLI::Option*, std::string>& env_names, int argc, char** argv) {
  for (CLI::App* sub : app->get_subcommands()) {
    for (CLI::Option* opt : sub->get_options()) {
      auto env = env_names.find(opt);
      if (env == env_names.end() || GivenOnCommandLine(argc, argv, "--" + opt->get_single_name())) continue;
      const char* value = std::getenv(env->second.c_str());
      if (value == nullptr || *value == '\0') continue;
      opt->clear();
      opt->add_result(std::string(value));
      opt->run_callback();  // validates and stores it
    }
    ApplyEnvironment(sub, env_names, argc, argv);
  }
}

int Run(const std::string& dir, const std::string& listen, const std::string& api, int sync_interval_ms,
        const std::string& tls_cert, const std::string& tls_key, CheckpointPolicy checkpoints,
        const std::string& portal, const std::string& fhir_base_uri, int64_t degraded_after_s, int64_t sweep_interval_s,
        int64_t body_check_delay_ms) {
  ApiOptions api_options;
  api_options.fhir_base_uri = fhir_base_uri;
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

  // Refused before anything is opened: a readable database leaks the case
  // metadata, and a second process on the same directory would be a second
  // node under the same identity.
  Status priv = CheckDataDirPrivate(dir);
  if (!priv.ok()) return Fail(priv);
  auto lock = DataDirLock::Acquire(dir);
  if (!lock.ok()) return Fail(lock.status());
  auto node = Node::Open(dir);
  if (!node.ok()) return Fail(node.status());
  const PublicIdentity& me = (*node)->identity();
  (*node)->SetCheckpointPolicy(checkpoints);
  (*node)->SetSweepInterval(sweep_interval_s * 1000);
  (*node)->SetBodyCheckDelay(body_check_delay_ms);
  SyncOptions sync;
  sync.listen = listen;
  sync.anti_entropy_interval_ms = sync_interval_ms;
  sync.degraded_after_ms = degraded_after_s * 1000;
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
  if (const char* fmt = std::getenv("KRING_LOG_FORMAT")) {
    std::string f = fmt;
    if (f == "json") SetLogFormat(LogFormat::kJson);
    else if (f != "text") {
      std::cerr << "kring-node: KRING_LOG_FORMAT must be text or json, not '" << f << "'\n";
      return 2;
    }
  }

  CLI::App app{"kring-node: a partner organisation's node in a kring network.\n"
               "Shares one household plan as signed, end-to-end encrypted fragments with partner nodes."};
  app.set_version_flag("--version", std::string("kring-node ") + kVersion);
  app.require_subcommand(1);
  // --config (and --version) also after the command: `kring-node run --config F`.
  app.fallthrough();
  CLI::Option* config_opt = app.set_config(
      "--config", "",
      "Configuration file (TOML): `data` and a [run] section with run's options (docs/operations.md). "
      "Also KRING_CONFIG. Flags win over KRING_* variables, which win over the file");
  app.config_formatter(std::make_shared<CommandConfig>(&app));
  app.allow_config_extras(CLI::config_extras_mode::error);
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
  auto* audit_verify = audit->add_subcommand(
      "verify", "Verify the access log's hash chain and its signed checkpoints; names the first broken entry or checkpoint.\n"
                "Exit 0: intact; 1: broken, rewritten or truncated; 2: intact but for entries a restore lost");
  audit_verify->add_option("--data", dir, "Data directory of the node")->required();
  std::vector<std::string> checkpoint_files;
  audit_verify->add_option("--checkpoint", checkpoint_files,
                           "A file of this node's checkpoints a partner exported (kring-node audit checkpoints --org THIS-ORG); repeatable")
      ->check(CLI::ExistingFile);
  bool against_partners = false;
  audit_verify->add_flag("--against-partners", against_partners,
                         "Also report the copies of this node's checkpoints that partners hold: a running node's "
                         "reconciliation hands back any copy that differs from its own, and each is checked and named");
  auto* audit_checkpoints = audit->add_subcommand(
      "checkpoints", "Print checkpoints this node holds, one JSON line each: partners' (to hand to them for their audit) and its own latest");
  audit_checkpoints->add_option("--data", dir, "Data directory of the node")->required();
  std::string checkpoint_org;
  audit_checkpoints->add_option("--org", checkpoint_org, "Only checkpoints of this organisation (a partner, or this node)");
  auto* audit_sign = audit->add_subcommand("sign-checkpoint", "Sign a checkpoint of the access log now (a running node also signs them itself)");
  audit_sign->add_option("--data", dir, "Data directory of the node")->required();

  auto* backup = app.add_subcommand("backup", "Write a consistent backup of the node's database (also while it runs); the key file is not in it");
  std::string backup_to, passphrase_file;
  backup->add_option("--data", dir, "Data directory of the node")->required();
  backup->add_option("--to", backup_to, "Backup file to create (mode 0600; must not exist)")->required();
  backup->add_option("--passphrase-file", passphrase_file,
                     "Encrypt with the passphrase on this file's first line (Argon2id + XChaCha20-Poly1305)")
      ->check(CLI::ExistingFile);
  auto* restore = app.add_subcommand(
      "restore", "Replace a stopped node's database with a backup; revokes every API token and records the restore");
  std::string restore_from;
  restore->add_option("--from", restore_from, "Backup file written by kring-node backup")->required()->check(CLI::ExistingFile);
  restore->add_option("--data", dir, "Data directory of the node (must hold its node.key; the node must be stopped)")->required();
  restore->add_option("--passphrase-file", passphrase_file, "The passphrase of an encrypted backup")->check(CLI::ExistingFile);

  auto* run = app.add_subcommand("run", "Run the node in the foreground; logs to stderr; stops on SIGTERM/SIGINT");
  std::string listen = "tcp://127.0.0.1:7400", api = "127.0.0.1:7480";
  int sync_interval_ms = 1000;
  run->add_option("--data", dir, "Data directory of the node")->required();
  run->add_option("--listen", listen, "Sync address partners connect to, tcp://HOST:PORT")->capture_default_str();
  run->add_option("--api", api, "Local API address HOST:PORT (beyond loopback only with TLS)")->capture_default_str();
  std::string tls_cert, tls_key;
  run->add_option("--tls-cert", tls_cert, "PEM certificate (chain) for the API; with --tls-key the API speaks HTTPS");
  run->add_option("--tls-key", tls_key, "PEM private key for --tls-cert");
  std::string fhir_base_uri = kDefaultFhirBaseUri;
  run->add_option("--fhir-base-uri", fhir_base_uri,
                  "Base URI of this organisation's FHIR code systems and identifiers (an identifier, need not resolve)")
      ->check([](const std::string& v) {
        return v.rfind("https://", 0) == 0 && v.size() <= 200 && v.back() != '/' &&
                       v.find_first_of(" \"<>\\#?") == std::string::npos
                   ? std::string()
                   : std::string("must be an https:// URI without a trailing '/', query or fragment, at most 200 characters");
      })
      ->capture_default_str();
  std::string portal;
  run->add_option("--portal", portal, "Serve the citizen's portal on HOST:PORT (beyond loopback only with TLS, the same --tls-cert/--tls-key)");
  run->add_option("--sync-interval-ms", sync_interval_ms, "Milliseconds between reconciliation rounds with each partner")
      ->check(CLI::Range(50, 600000))
      ->capture_default_str();
  int64_t degraded_after_s = 300;
  run->add_option("--degraded-after-s", degraded_after_s,
                  "/v1/health says \"degraded\" when a partner has not been connected for this many seconds")
      ->check(CLI::Range(int64_t{1}, int64_t{7} * 86400))
      ->capture_default_str();
  CheckpointPolicy checkpoint_policy;
  int64_t checkpoint_interval_s = checkpoint_policy.interval_ms / 1000;
  run->add_option("--checkpoint-every", checkpoint_policy.every_entries,
                  "Sign an access-log checkpoint after this many new entries")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  run->add_option("--checkpoint-interval-s", checkpoint_interval_s,
                  "... or this many seconds after the last one, when the log grew")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->capture_default_str();

  int64_t sweep_interval_s = 86400;
  run->add_option("--sweep-interval-s", sweep_interval_s,
                  "Seconds between retention sweeps, which destroy what the retention rules say is due (0: never)")
      ->check(CLI::Range(int64_t{0}, int64_t{31} * 86400))
      ->capture_default_str();
  int64_t body_check_delay_ms = 0;
  run->add_option("--body-check-delay-ms", body_check_delay_ms,
                  "Milliseconds after a received fragment is stored before the background lane checks its body "
                  "(plan reads check at once; for tests of crash recovery)")
      ->check(CLI::Range(int64_t{0}, int64_t{86400} * 1000))
      ->capture_default_str();

  auto* retention = app.add_subcommand(
      "retention", "Set this organisation's retention rules (ISO 8601 periods: P15Y, P6W, PT10S); a running node "
                   "applies them at its next sweep. Without options: print the rules");
  retention->add_option("--data", dir, "Data directory of the node")->required();
  std::string retention_default, retention_access;
  std::vector<std::string> retention_bases, retention_duties;
  retention->add_option("--default", retention_default, "Period for what this organisation wrote when no rule below applies");
  retention->add_option("--basis", retention_bases,
                        "\"TEXT=PERIOD\": a rule for cases where this organisation's legal basis names TEXT (e.g. \"Wmo 2015=P15Y\"), "
                        "or for a close reason (\"withdrawn-request=P6W\"); repeatable");
  retention->add_option("--duty", retention_duties,
                        "\"TEXT=PERIOD\": like --basis, and the law obliges this organisation to keep it (it survives an "
                        "erasure request); repeatable");
  retention->add_option("--access-log", retention_access, "Period each access-log entry is kept (NEN 7513: P5Y)");

  auto* export_cmd = app.add_subcommand(
      "export", "Print what this organisation may read of a case (plan, consents, access log) as one JSON document");
  std::string export_case;
  export_cmd->add_option("--data", dir, "Data directory of the node")->required();
  export_cmd->add_option("--case", export_case, "The case id (32 hex characters)")->required();

  auto network_commands = AddNetworkCommands(app);
  // Every option the file can set can also come from KRING_<OPTION>.
  std::map<const CLI::Option*, std::string> env_names;
  const bool data_in_env = std::getenv("KRING_DATA") != nullptr && *std::getenv("KRING_DATA") != '\0';
  std::function<void(CLI::App*)> data_from_env = [&](CLI::App* a) {
    if (CLI::Option* d = a->get_option_no_throw("--data")) {
      env_names[d] = "KRING_DATA";
      if (data_in_env) d->required(false);  // ApplyEnvironment fills it
    }
    for (CLI::App* sub : a->get_subcommands({})) data_from_env(sub);
  };
  data_from_env(&app);
  std::function<void(CLI::App*)> add_footer = [&](CLI::App* a) {
    a->footer("Also: --config FILE (TOML, or KRING_CONFIG) and KRING_<OPTION> variables, e.g. KRING_DATA; "
              "flags win over variables, variables over the file (docs/operations.md)");
    for (CLI::App* sub : a->get_subcommands({})) add_footer(sub);
  };
  for (CLI::App* sub : app.get_subcommands({})) add_footer(sub);
  for (CLI::Option* opt : run->get_options())
    if (opt->get_single_name() != "help") env_names[opt] = EnvName(opt->get_single_name());
  if (const char* file = std::getenv("KRING_CONFIG"); file != nullptr && *file != '\0' &&
                                                       !GivenOnCommandLine(argc, argv, "--config")) {
    if (::access(file, R_OK) != 0)
      return Fail(Status::NotFound(std::string("KRING_CONFIG names ") + file + ", which cannot be read"));
    config_opt->default_str(file);
  }

  try {
    app.parse(argc, argv);
    ApplyEnvironment(&app, env_names, argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (auto rc = RunNetworkCommands(*network_commands)) return *rc;
  if (*init) {
    auto pub = InitNode(dir, org, name);
    if (!pub.ok()) return Fail(pub.status());
    std::cout << CardToJson(*pub) << "\n";
    std::cerr << "kring-node: created node " << org << " in " << dir << "; give the card above to your partners\n"
              << "fingerprint " << CardFingerprint(*pub) << " (read it to them over the phone: they compare it with what peer add prints)\n";
    return 0;
  }
  if (*card) {
    auto id = ReadKeyFile(KeyFilePath(dir));
    if (!id.ok()) return Fail(id.status());
    std::cout << CardToJson(id->pub) << "\n";
    std::cerr << "fingerprint " << CardFingerprint(id->pub) << "\n";
    return 0;
  }
  if (*peer_add) {
    auto text = ReadOperatorFile(card_file, kMaxCardBytes);
    if (!text.ok()) return Fail(text.status());
    auto pub = CardFromJson(*text);
    if (!pub.ok()) return Fail(pub.status());
    if (endpoint.rfind("tcp://", 0) != 0) return Fail(Status::InvalidArgument("--endpoint must be tcp://HOST:PORT"));
    auto me = ReadKeyFile(KeyFilePath(dir));
    if (!me.ok()) return Fail(me.status());
    if (pub->org == me->pub.org) return Fail(Status::InvalidArgument("that is this node's own card"));
    auto store = Store::Open(DatabasePath(dir));
    if (!store.ok()) return Fail(store.status());
    Status st = (*store)->AddPartner(Partner{*pub, endpoint, NowMs()});
    if (!st.ok()) return Fail(st);
    std::cerr << "kring-node: " << pub->org << " (" << pub->display_name << ") is now a partner at " << endpoint << "\n"
              << "fingerprint " << CardFingerprint(*pub) << ": compare it with the one " << pub->org
              << " reads you over the phone; if it differs, run peer remove\n";
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
    // The link states a running node recorded (node/sync.h); none when it is not running.
    nlohmann::json links = nlohmann::json::object();
    bool running = false;
    if (auto raw = (*store)->GetNodeState(kLinkStatesKey); raw.ok() && raw->has_value()) {
      auto j = nlohmann::json::parse(std::string((*raw)->begin(), (*raw)->end()), nullptr, false);
      if (j.is_object() && j.contains("pid") && j["pid"].is_number_integer() && j.contains("links")) {
        pid_t pid = j["pid"].get<pid_t>();
        running = pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
        if (running) links = j["links"];
      }
    }
    auto link_of = [&](const Partner& p) {
      auto it = links.find(p.identity.org);
      if (!running) return nlohmann::json{{"state", "node-not-running"}, {"cause", ""}};
      if (it == links.end() || (*it)["endpoint"] != p.endpoint) return nlohmann::json{{"state", "never-connected"}, {"cause", ""}};
      return *it;
    };
    if (peer_json) {
      std::cout << "[";
      for (size_t i = 0; i < list->size(); ++i) {
        const Partner& p = (*list)[i];
        nlohmann::json l = link_of(p);
        std::cout << (i ? "," : "") << "{\"card\":" << CardToJson(p.identity, -1) << ",\"endpoint\":"
                  << nlohmann::json(p.endpoint).dump() << ",\"fingerprint\":\"" << CardFingerprint(p.identity)
                  << "\",\"source\":\"" << (p.from_roster ? "roster" : "peer") << "\",\"state\":" << l["state"].dump()
                  << ",\"cause\":" << l["cause"].dump() << "}";
      }
      std::cout << "]\n";
    } else {
      std::printf("%-24s %-28s %-32s %-40s %-7s %-18s %s\n", "ORG", "NAME", "ENDPOINT", "FINGERPRINT", "SOURCE", "STATE",
                  "CAUSE");
      for (const Partner& p : *list) {
        nlohmann::json l = link_of(p);
        std::printf("%-24s %-28s %-32s %-40s %-7s %-18s %s\n", p.identity.org.c_str(), p.identity.display_name.c_str(),
                    p.endpoint.c_str(), CardFingerprint(p.identity).c_str(), p.from_roster ? "roster" : "peer",
                    l["state"].get<std::string>().c_str(), l["cause"].get<std::string>().c_str());
      }
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
    auto id = ReadKeyFile(KeyFilePath(dir));
    if (!id.ok()) return Fail(id.status());
    std::vector<CheckpointSource> extra;
    for (const std::string& file : checkpoint_files) {
      std::ifstream in(file, std::ios::binary);
      if (!in) return Fail(Status::NotFound("cannot read checkpoint file " + file));
      std::string line;
      int n = 0;
      while (std::getline(in, line)) {
        ++n;
        if (line.empty()) continue;
        auto cp = CheckpointFromJson(line);
        if (!cp.ok()) return Fail(Status::InvalidArgument(file + " line " + std::to_string(n) + ": " + cp.status().message()));
        extra.push_back({std::move(*cp), "file " + file});
      }
    }
    auto store = Store::Open(DatabasePath(dir));
    if (!store.ok()) return Fail(store.status());
    auto audit_or = AuditAccessLog(**store, id->pub, extra);
    if (!audit_or.ok()) return Fail(audit_or.status());
    const CheckpointAudit& a = *audit_or;
    for (const std::string& f : a.findings) std::cout << f << "\n";
    if (against_partners) {
      // The copies partners keep of our checkpoints come back by sync; the
      // audit above compared every one of them with the chain.
      auto held = (*store)->HeldCheckpoints(id->pub.org);
      if (!held.ok()) return Fail(held.status());
      std::set<std::string> holders;
      for (const CheckpointRow& r : *held)
        if (r.holder != id->pub.org) holders.insert(r.holder);
      // A partner's copy that equals one of our own checkpoints is never
      // handed back (we hold the same record); one that differs is, so a
      // rewrite shows up here once the node has reconciled with that partner.
      if (holders.empty())
        std::cout << "partners' copies: none differs from this node's own checkpoints (as of the node's last "
                     "reconciliation with each partner; a copy that differed would have been handed back)\n";
      for (const std::string& h : holders) std::cout << "checked against the copy " << h << " handed back\n";
    }
    switch (a.verdict) {
      case CheckpointAudit::Verdict::kBroken:
        std::cout << "access log BROKEN: " << a.findings.size() << " finding(s) above\n";
        return 1;
      case CheckpointAudit::Verdict::kGap:
        std::cout << "access log INCOMPLETE: " << a.chain.entries << " entries, hash chain intact, " << a.checkpoints
                  << " checkpoint(s) checked; entries lost by a restore (above)\n";
        return 2;
      case CheckpointAudit::Verdict::kIntact:
        std::cout << "access log ok: " << a.chain.entries << " entries, hash chain intact, matches " << a.checkpoints
                  << " signed checkpoint(s)\n";
        return 0;
    }
  }
  if (*audit_checkpoints) {
    auto id = ReadKeyFile(KeyFilePath(dir));
    if (!id.ok()) return Fail(id.status());
    auto store = Store::Open(DatabasePath(dir));
    if (!store.ok()) return Fail(store.status());
    auto held = (*store)->HeldCheckpoints(checkpoint_org == id->pub.org ? "" : checkpoint_org);
    if (!held.ok()) return Fail(held.status());
    size_t printed = 0;
    for (const CheckpointRow& c : *held) {
      // Our own checkpoints handed back by partners are evidence for our audit, not for export.
      if (c.org == id->pub.org || (!checkpoint_org.empty() && c.org != checkpoint_org)) continue;
      std::cout << CheckpointToJson(c) << "\n";
      ++printed;
    }
    if (checkpoint_org.empty() || checkpoint_org == id->pub.org) {
      auto own = (*store)->OwnCheckpoints();
      if (!own.ok()) return Fail(own.status());
      if (!own->empty()) {
        CheckpointRow c = own->back();
        c.org = c.holder = id->pub.org;
        std::cout << CheckpointToJson(c) << "\n";
        ++printed;
      }
    }
    if (printed == 0 && !checkpoint_org.empty())
      return Fail(Status::NotFound("no checkpoint of '" + checkpoint_org + "' held here"));
    return 0;
  }
  if (*audit_sign) {
    auto id = ReadKeyFile(KeyFilePath(dir));
    if (!id.ok()) return Fail(id.status());
    auto store = Store::Open(DatabasePath(dir));
    if (!store.ok()) return Fail(store.status());
    auto max_hlc = (*store)->MaxHlc();
    if (!max_hlc.ok()) return Fail(max_hlc.status());
    HybridClock clock(&HybridClock::SystemMillis);
    clock.SetFloor(*max_hlc);
    auto cp = WriteCheckpoint(**store, *id, clock.Now(), NowMs());
    if (!cp.ok()) return Fail(cp.status());
    std::cerr << "kring-node: signed checkpoint " << cp->body.entries << " of the access log\n";
    return 0;
  }
  if (*backup || *restore) {
    std::string passphrase;
    if (!passphrase_file.empty()) {
      auto p = ReadPassphraseFile(passphrase_file);
      if (!p.ok()) return Fail(p.status());
      passphrase = std::move(*p);
    }
    auto wipe = [&] { sodium_memzero(passphrase.data(), passphrase.size()); };
    if (*backup) {
      auto t0 = std::chrono::steady_clock::now();
      auto summary = BackupNode(dir, backup_to, passphrase, NowMs());
      wipe();
      if (!summary.ok()) return Fail(summary.status());
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
      std::cerr << "kring-node: backup written to " << backup_to << " (" << summary->bytes << " bytes, "
                << (summary->encrypted ? "encrypted" : "NOT encrypted") << ", " << summary->entries
                << " access-log entries, " << ms << " ms); keep node.key separately\n";
      return 0;
    }
    auto summary = RestoreNode(restore_from, dir, passphrase, NowMs());
    wipe();
    if (!summary.ok()) return Fail(summary.status());
    std::cerr << "kring-node: restored " << dir << " from " << restore_from << " ("
              << (summary->backup_time_known ? "backup of " : "raw copy; last entry at ") << FormatUtc(summary->backup_time_ms)
              << "). Access-log entries written after it are missing and recorded as such; "
              << summary->tokens_revoked << " API token(s) revoked: issue new ones with kring-node token. "
              << summary->checkpoints_carried << " checkpoint(s) kept from the replaced database. "
              << "Partners re-send what they hold when the node runs.\n";
    return 0;
  }
  if (*retention) {
    auto store = OpenStoreOf(dir);
    if (!store.ok()) return Fail(store.status());
    auto rules = LoadRetention(**store);
    if (!rules.ok()) return Fail(rules.status());
    const bool change = !retention_default.empty() || !retention_access.empty() || !retention_bases.empty() ||
                        !retention_duties.empty();
    if (change) {
      if (!retention_default.empty()) {
        auto p = ParsePeriod(retention_default);
        if (!p.ok()) return Fail(Status::InvalidArgument("--default: " + p.status().message()));
        rules->fallback.period = *p;
      }
      if (!retention_access.empty()) {
        auto p = ParsePeriod(retention_access);
        if (!p.ok()) return Fail(Status::InvalidArgument("--access-log: " + p.status().message()));
        rules->access_log = *p;
      }
      // The named rules given replace the stored ones as a whole.
      if (!retention_bases.empty() || !retention_duties.empty()) {
        rules->rules.clear();
        for (const auto& [list, duty] : {std::pair{&retention_bases, false}, std::pair{&retention_duties, true}})
          for (const std::string& arg : *list) {
            auto r = ParseRetentionRule(arg, duty);
            if (!r.ok()) return Fail(r.status());
            rules->rules.push_back(std::move(*r));
          }
      }
      Status st = SaveRetention(**store, *rules);
      if (!st.ok()) return Fail(st);
      std::cerr << "kring-node: retention rules saved; a running node applies them at its next sweep\n";
    }
    std::cout << RetentionToJson(*rules).dump(2) << "\n";
    return 0;
  }
  if (*export_cmd) {
    CaseId case_id;
    if (!CaseIdFromHex(export_case, &case_id)) return Fail(Status::InvalidArgument("--case must be 32 hex characters"));
    auto node = Node::Open(dir);
    if (!node.ok()) return Fail(node.status());
    auto doc = (*node)->ExportCase(case_id);
    AccessEntry e;
    RandomBytes(e.event_id);
    e.time_ms = NowMs();
    e.action = "export";
    e.outcome = doc.ok() ? "success" : "failure";
    e.actor_id = "kring-node-cli";
    e.actor_name = "kring-node export (operator)";
    e.actor_role = "operator";
    e.organisation = (*node)->identity().org;
    e.client_system = "kring-node";
    e.case_id = case_id;
    e.items = {"export"};
    if (Status st = (*node)->AppendAccess(&e); !st.ok()) return Fail(st);
    if (!doc.ok()) return Fail(doc.status());
    std::cout << doc->dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  if (*run) {
    checkpoint_policy.interval_ms = checkpoint_interval_s * 1000;
    return Run(dir, listen, api, sync_interval_ms, tls_cert, tls_key, checkpoint_policy, portal, fhir_base_uri,
               degraded_after_s, sweep_interval_s, body_check_delay_ms);
  }
  return 2;
}

}  // namespace
}  // namespace kring

int main(int argc, char** argv) { return kring::Main(argc, argv); }
