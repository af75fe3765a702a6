// The `network` and `keys` commands of kring-node (docs/operations.md, "Running a network").
#include "node/network_cli.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "node/data_dir.h"
#include "node/network.h"
#include "node/node.h"
#include "protocol/card.h"

namespace kring {

struct NetworkCommands {
  CLI::App* create = nullptr;
  CLI::App* sign = nullptr;
  CLI::App* join = nullptr;
  CLI::App* propose = nullptr;
  CLI::App* submit = nullptr;
  CLI::App* show = nullptr;
  CLI::App* rotate = nullptr;
  std::string dir, name, file, endpoint, remove, set_endpoint, add_card, replace_keys;
  std::vector<std::string> stewards;
  std::vector<std::string> members;  // CARD_FILE=ENDPOINT
  int threshold = 0;
  bool json = false;
  bool emergency = false;
  int64_t switch_after_s = 30;
};

namespace {

int Fail(const Status& st) {
  std::cerr << "kring-node: " << st.message() << "\n";
  return 1;
}

int64_t NowMs() { return static_cast<int64_t>(HybridClock::SystemMillis()); }

Status WriteText(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status::IOError("cannot write " + tmp);
    out << text << "\n";
    if (!out.flush()) return Status::IOError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::IOError("cannot replace " + path);
  return Status::Ok();
}

Result<RosterMember> MemberFromCard(const std::string& card_file, const std::string& endpoint) {
  auto text = ReadOperatorFile(card_file, kMaxCardBytes);
  if (!text.ok()) return text.status();
  auto pub = CardFromJson(*text);
  if (!pub.ok()) return Status::InvalidArgument(card_file + ": " + pub.status().message());
  if (!IsValidSyncEndpoint(endpoint)) return Status::InvalidArgument("endpoint '" + endpoint + "' is not tcp://HOST:PORT");
  RosterMember m;
  m.org.v = pub->org;
  m.name.v = pub->display_name;
  m.sign_pk = pub->sign_pk;
  m.box_pk = pub->box_pk;
  m.transport_pk = pub->transport_pk;
  m.endpoint.v = endpoint;
  return m;
}

std::vector<std::string> SplitList(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const std::string& s : in) {
    std::stringstream ss(s);
    std::string part;
    while (std::getline(ss, part, ','))
      if (!part.empty()) out.push_back(part);
  }
  return out;
}

void PrintRoster(const Roster& r, const std::string& me) {
  std::printf("network   %s\nversion   %u (id %s)\nstewards  ", r.body.network.v.c_str(), r.body.version,
              ToHex(r.Id()).substr(0, 16).c_str());
  for (size_t i = 0; i < r.body.stewards.v.size(); ++i) std::printf("%s%s", i ? ", " : "", r.body.stewards.v[i].v.c_str());
  std::printf("; %u signature(s) needed for the next version\n\n", r.body.threshold);
  std::printf("%-24s %-28s %-32s %s\n", "ORG", "NAME", "ENDPOINT", "FINGERPRINT");
  for (const RosterMember& m : r.body.members.v)
    std::printf("%-24s %-28s %-32s %s%s\n", m.org.v.c_str(), m.name.v.c_str(), m.endpoint.v.c_str(),
                CardFingerprint(m.Identity()).c_str(), m.org.v == me ? "  (this node)" : "");
}

int Run(const NetworkCommands& c) {
  auto me = ReadKeyFile(KeyFilePath(c.dir));
  if (!me.ok()) return Fail(me.status());
  if (*c.rotate) {
    if (c.emergency) {
      auto pub = ReplaceKeysNow(c.dir, NowMs());
      if (!pub.ok()) return Fail(pub.status());
      std::cout << CardToJson(*pub) << "\n";
      std::cerr << "kring-node: new keys for " << pub->org << " (fingerprint " << CardFingerprint(*pub)
                << "); the old ones are kept in " << RetiredKeysDir(c.dir) << " to open what was sealed to them.\n"
                << "Partners accept the new keys once k stewards sign a roster version with them:\n"
                << "  kring-node network propose --data DIR --replace-keys CARD_FILE  (the card above)\n";
      return 0;
    }
    auto rot = RotateKeys(c.dir, c.switch_after_s * 1000, NowMs());
    if (!rot.ok()) return Fail(rot.status());
    PublicIdentity fresh;
    fresh.org = rot->body.org.v;
    fresh.sign_pk = rot->body.new_sign_pk;
    fresh.box_pk = rot->body.new_box_pk;
    fresh.transport_pk = rot->body.new_transport_pk;
    std::cerr << "kring-node: new keys for " << fresh.org << " (fingerprint " << CardFingerprint(fresh)
              << "); partners receive the signed rotation now and switch in " << c.switch_after_s << " s\n";
    return 0;
  }
  auto store = Store::Open(DatabasePath(c.dir));
  if (!store.ok()) return Fail(store.status());
  const std::string& org = me->pub.org;

  if (*c.create) {
    std::vector<RosterMember> members;
    bool self_listed = false;
    for (const std::string& spec : c.members) {
      auto eq = spec.rfind('=');
      if (eq == std::string::npos) return Fail(Status::InvalidArgument("--member takes CARD_FILE=ENDPOINT, not '" + spec + "'"));
      auto m = MemberFromCard(spec.substr(0, eq), spec.substr(eq + 1));
      if (!m.ok()) return Fail(m.status());
      self_listed = self_listed || m->org.v == org;
      members.push_back(std::move(*m));
    }
    if (!self_listed) {
      if (c.endpoint.empty()) return Fail(Status::InvalidArgument("give --endpoint: where this node listens for the network"));
      RosterMember self;
      self.org.v = org;
      self.name.v = me->pub.display_name;
      self.sign_pk = me->pub.sign_pk;
      self.box_pk = me->pub.box_pk;
      self.transport_pk = me->pub.transport_pk;
      self.endpoint.v = c.endpoint;
      if (!IsValidSyncEndpoint(c.endpoint)) return Fail(Status::InvalidArgument("--endpoint must be tcp://HOST:PORT"));
      members.push_back(std::move(self));
    }
    auto r = FoundRoster(c.name, std::move(members), SplitList(c.stewards), c.threshold, NowMs());
    if (!r.ok()) return Fail(r.status());
    if (r->body.IsSteward(org)) {
      if (Status st = SignRoster(&*r, *me); !st.ok()) return Fail(st);
    }
    std::cout << RosterToJson(*r) << "\n";
    std::cerr << "kring-node: version 1 of '" << c.name << "'; every steward signs it (kring-node network sign), "
              << "then every member joins with it (kring-node network join)\n";
    return 0;
  }
  if (*c.sign) {
    auto text = ReadOperatorFile(c.file, kMaxRosterJsonBytes);
    if (!text.ok()) return Fail(text.status());
    auto r = RosterFromJson(*text);
    if (!r.ok()) return Fail(Status::InvalidArgument(c.file + ": " + r.status().message()));
    if (Status st = SignRoster(&*r, *me); !st.ok()) return Fail(st);
    if (Status st = WriteText(c.file, RosterToJson(*r)); !st.ok()) return Fail(st);
    std::cerr << "kring-node: " << org << " signed version " << r->body.version << " (id " << ToHex(r->Id()).substr(0, 16)
              << "); it carries " << r->signatures.v.size() << " signature(s)\n";
    return 0;
  }
  if (*c.join || *c.submit) {
    auto text = ReadOperatorFile(c.file, kMaxRosterJsonBytes);
    if (!text.ok()) return Fail(text.status());
    auto r = RosterFromJson(*text);
    if (!r.ok()) return Fail(Status::InvalidArgument(c.file + ": " + r.status().message()));
    auto current = CurrentRosterOf(**store);
    if (*c.join && current.ok() && current->body.network.v != r->body.network.v)
      return Fail(Status::Conflict("this node is already a member of '" + current->body.network.v + "'"));
    if (*c.submit && !current.ok()) return Fail(current.status());
    auto outcome = AdoptRoster(**store, org, *r, org, NowMs());
    if (!outcome.ok()) return Fail(outcome.status());
    if (outcome->refusal)
      return Fail(Status::PermissionDenied("version " + std::to_string(r->body.version) + " refused (" +
                                           RejectName(outcome->refusal->reason) + "): " + outcome->refusal->detail));
    if (!outcome->adopted) {
      std::cerr << "kring-node: version " << r->body.version << " is already adopted here\n";
      return 0;
    }
    std::cerr << "kring-node: adopted version " << r->body.version << " of '" << r->body.network.v << "': "
              << r->body.members.v.size() << " member(s); a running node connects to them and passes the version on within seconds\n";
    return 0;
  }
  if (*c.show) {
    auto r = CurrentRosterOf(**store);
    if (!r.ok()) return Fail(r.status());
    if (c.json) std::cout << RosterToJson(*r) << "\n";
    else PrintRoster(*r, org);
    return 0;
  }
  if (*c.propose) {
    auto current = CurrentRosterOf(**store);
    if (!current.ok()) return Fail(current.status());
    RosterChange change;
    int changes = 0;
    if (!c.add_card.empty()) {
      if (c.endpoint.empty()) return Fail(Status::InvalidArgument("--add needs --endpoint: where the new member's node listens"));
      auto m = MemberFromCard(c.add_card, c.endpoint);
      if (!m.ok()) return Fail(m.status());
      change.add = std::move(*m);
      ++changes;
    }
    if (!c.remove.empty()) {
      change.remove = c.remove;
      ++changes;
    }
    if (!c.set_endpoint.empty()) {
      auto eq = c.set_endpoint.find('=');
      if (eq == std::string::npos) return Fail(Status::InvalidArgument("--set-endpoint takes ORG=ENDPOINT"));
      std::string ep = c.set_endpoint.substr(eq + 1);
      if (!IsValidSyncEndpoint(ep)) return Fail(Status::InvalidArgument("endpoint '" + ep + "' is not tcp://HOST:PORT"));
      change.set_endpoint = std::make_pair(c.set_endpoint.substr(0, eq), ep);
      ++changes;
    }
    if (!c.replace_keys.empty()) {
      auto text = ReadOperatorFile(c.replace_keys, kMaxCardBytes);
      if (!text.ok()) return Fail(text.status());
      auto pub = CardFromJson(*text);
      if (!pub.ok()) return Fail(pub.status());
      change.replace_keys = *pub;
      ++changes;
    }
    if (!c.stewards.empty()) {
      change.stewards = SplitList(c.stewards);
      ++changes;
    }
    if (c.threshold > 0) {
      change.threshold = c.threshold;
      ++changes;
    }
    if (changes == 0) return Fail(Status::InvalidArgument("say what changes: --add, --remove, --set-endpoint, --replace-keys, --stewards or --threshold"));
    auto history = (*store)->KeyHistory();
    if (!history.ok()) return Fail(history.status());
    auto next = ProposeRoster(*current, change, *history, NowMs());
    if (!next.ok()) return Fail(next.status());
    if (current->body.IsSteward(org)) {
      if (Status st = SignRoster(&*next, *me); !st.ok()) return Fail(st);
    }
    std::cout << RosterToJson(*next) << "\n";
    std::cerr << "kring-node: proposal for version " << next->body.version << "; it needs the signatures of "
              << int{current->body.threshold} << " steward(s) of version " << current->body.version
              << " (kring-node network sign), then kring-node network submit\n";
    return 0;
  }
  return Fail(Status::InvalidArgument("no network command"));
}

}  // namespace

std::shared_ptr<NetworkCommands> AddNetworkCommands(CLI::App& app) {
  auto c = std::make_shared<NetworkCommands>();
  auto* network = app.add_subcommand("network", "Run a network of organisations from one signed roster (no peer add per pair)");
  network->require_subcommand(1);
  c->create = network->add_subcommand("create", "Found a network: print version 1 of its roster as JSON (this node is a member)");
  c->create->add_option("--data", c->dir, "Data directory of the node")->required();
  c->create->add_option("--name", c->name, "The network's name, e.g. 'Kenis Wijk Noord'")->required();
  c->create->add_option("--stewards", c->stewards, "Member organisations that sign the next versions: ORG,ORG,...")->required();
  c->create->add_option("--threshold", c->threshold, "How many stewards must sign a next version (k)")->required()->check(CLI::Range(1, 32));
  c->create->add_option("--member", c->members, "A member: its card file and sync endpoint, CARD_FILE=tcp://HOST:PORT; repeatable");
  c->create->add_option("--endpoint", c->endpoint, "This node's own sync endpoint, tcp://HOST:PORT (unless its card is a --member)");
  c->sign = network->add_subcommand("sign", "Add this organisation's signature to a roster version or proposal (the file, in place)");
  c->sign->add_option("--data", c->dir, "Data directory of the node")->required();
  c->sign->add_option("--file", c->file, "The roster JSON file")->required();
  c->join = network->add_subcommand("join", "Adopt a validly signed roster that lists this organisation: its members become partners");
  c->join->add_option("--data", c->dir, "Data directory of the node")->required();
  c->join->add_option("--file", c->file, "The roster JSON file")->required();
  c->propose = network->add_subcommand("propose", "Print the next roster version with one change, as a proposal to sign");
  c->propose->add_option("--data", c->dir, "Data directory of the node")->required();
  c->propose->add_option("--add", c->add_card, "Add a member: its card file (with --endpoint)");
  c->propose->add_option("--endpoint", c->endpoint, "The new member's sync endpoint, tcp://HOST:PORT");
  c->propose->add_option("--remove", c->remove, "Remove a member: its organisation id (it is cut off on every node)");
  c->propose->add_option("--set-endpoint", c->set_endpoint, "Move a member: ORG=tcp://HOST:PORT");
  c->propose->add_option("--replace-keys", c->replace_keys,
                         "Emergency rotation: a member's new card (its keys were lost or stolen); its old keys stop counting now");
  c->propose->add_option("--stewards", c->stewards, "New stewards: ORG,ORG,...");
  c->propose->add_option("--threshold", c->threshold, "New threshold k")->check(CLI::Range(1, 32));
  c->submit = network->add_subcommand("submit", "Adopt a proposal that carries enough steward signatures and spread it to every member");
  c->submit->add_option("--data", c->dir, "Data directory of the node")->required();
  c->submit->add_option("--file", c->file, "The signed proposal (JSON file)")->required();
  c->show = network->add_subcommand("show", "Print the current roster: version, members, endpoints, fingerprints, stewards");
  c->show->add_option("--data", c->dir, "Data directory of the node")->required();
  c->show->add_flag("--json", c->json, "Print the roster JSON instead of a table");

  auto* keys = app.add_subcommand("keys", "Manage this node's keys");
  keys->require_subcommand(1);
  c->rotate = keys->add_subcommand("rotate", "Make new keys; partners learn them from a statement signed with the old and the new key");
  c->rotate->add_option("--data", c->dir, "Data directory of the node")->required();
  c->rotate->add_option("--switch-after-s", c->switch_after_s,
                        "Seconds until the new keys take over (partners must receive the statement before)")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->capture_default_str();
  c->rotate->add_flag("--emergency", c->emergency,
                      "The keys are lost or stolen: replace them now (node stopped); stewards then sign a roster version with the new card");
  return c;
}

std::optional<int> RunNetworkCommands(const NetworkCommands& c) {
  for (CLI::App* sub : {c.create, c.sign, c.join, c.propose, c.submit, c.show, c.rotate})
    if (*sub) return Run(c);
  return std::nullopt;
}

}  // namespace kring
