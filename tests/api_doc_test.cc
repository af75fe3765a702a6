// Holds docs/api.yaml to what a real node does: every documented operation is called and answers as documented.
//
// The walk is driven by the document, not by a list of routes here: an
// operation added to the document without an example request below fails
// the suite, so no documented operation goes untested. Besides the answer to
// a valid request, the walk checks the refusals every operation shares (no
// token, no actor, a body that is not JSON, an unknown field, an unknown
// case), every request example in the document is sent to the node, and the
// consent and plan rules' 403, 404 and 409 answers are provoked one by one.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <httplib.h>
#include <yaml-cpp/yaml.h>

#include "examples/cluster.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;

namespace {

const std::string kDocPath = std::string(KRING_SOURCE_DIR) + "/docs/api.yaml";
const std::string kOrg = "gemeente-deventer";
const std::string kPartner = "wijkteam-deventer";
const std::set<std::string> kMethods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"};
// The headers whose absence the API answers with 400 missing_actor.
const std::set<std::string> kActorHeaders = {"X-Kring-Actor", "X-Kring-Actor-Name", "X-Kring-Role"};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "Text/Plain; Version=0.0.4" and "text/plain;version=0.0.4" name the same media type.
std::string NormalMediaType(const std::string& s) {
  std::string out;
  for (char c : Lower(s))
    if (c != ' ') out += c;
  return out;
}

// ---------------------------------------------------------------- the document

// yaml-cpp's Node::operator= rebinds the node it refers to inside the tree, so
// walking with `n = n[key]` would rewrite the document: only const access and
// reset() below. A missing key gives an undefined node, never yaml-cpp's
// "zombie" node, which throws on the next access.
YAML::Node Child(const YAML::Node& n, const std::string& key) {
  if (!n.IsDefined() || !n.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node c = n[key];
  return c.IsDefined() ? c : YAML::Node(YAML::NodeType::Undefined);
}

// The node a local reference ("#/components/schemas/Case") points at; undefined if none.
YAML::Node Lookup(const YAML::Node& doc, const std::string& ref) {
  YAML::Node cur(YAML::NodeType::Undefined);
  if (ref.rfind("#/", 0) != 0) return cur;
  cur.reset(doc);
  std::stringstream parts(ref.substr(2));
  std::string part;
  while (std::getline(parts, part, '/')) {
    for (size_t i; (i = part.find("~1")) != std::string::npos;) part.replace(i, 2, "/");
    for (size_t i; (i = part.find("~0")) != std::string::npos;) part.replace(i, 2, "~");
    if (!cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node next = Child(cur, part);
    if (!next.IsDefined()) return next;
    cur.reset(next);
  }
  return cur;
}

// Follows $ref chains; fails the check (and returns an undefined node) on a dangling one.
YAML::Node Resolve(const YAML::Node& doc, const YAML::Node& n) {
  YAML::Node cur(YAML::NodeType::Undefined);
  cur.reset(n);
  for (int hops = 0; cur.IsMap() && Child(cur, "$ref").IsDefined(); ++hops) {
    std::string ref = Child(cur, "$ref").as<std::string>();
    YAML::Node target = Lookup(doc, ref);
    if (!target.IsDefined() || hops > 16) {
      FAIL_CHECK("$ref " << ref << " does not resolve");
      return YAML::Node(YAML::NodeType::Undefined);
    }
    cur.reset(target);
  }
  return cur;
}

std::string Str(const YAML::Node& n, const std::string& key) {
  YAML::Node v = Child(n, key);
  return v.IsScalar() ? v.as<std::string>() : "";
}

bool Flag(const YAML::Node& n, const std::string& key) {
  YAML::Node v = Child(n, key);
  return v.IsScalar() && v.as<std::string>() == "true";
}

// A YAML value (an example in the document) as JSON. Quoted scalars stay strings.
json YamlToJson(const YAML::Node& n) {
  if (n.IsMap()) {
    json o = json::object();
    for (const auto& kv : n) o[kv.first.as<std::string>()] = YamlToJson(kv.second);
    return o;
  }
  if (n.IsSequence()) {
    json a = json::array();
    for (const auto& e : n) a.push_back(YamlToJson(e));
    return a;
  }
  if (!n.IsScalar()) return nullptr;
  std::string s = n.as<std::string>();
  if (n.Tag() == "!") return s;
  if (s == "null" || s == "~") return nullptr;
  if (s == "true" || s == "false") return s == "true";
  if (std::regex_match(s, std::regex("-?[0-9]+"))) return json::parse(s);
  if (std::regex_match(s, std::regex("-?[0-9]+\\.[0-9]+([eE][-+]?[0-9]+)?"))) return json::parse(s);
  return s;
}

// `at` without its array indices: body.items[3].conflicts -> body.items[].conflicts.
std::string WithoutIndices(const std::string& at) {
  static const std::regex kIndex(R"(\[[0-9]+\])");
  return std::regex_replace(at, kIndex, "[]");
}

// What the JSON value `v` lacks against an OpenAPI 3.0 schema: type,
// nullable, required, properties, additionalProperties: false, items, enum,
// pattern, format date-time, allOf. An array of objects whose every instance
// came back empty (body.items[].conflicts empty in every item) is named by
// Unchecked(), since its items' schema went unchecked.
struct SchemaCheck {
  explicit SchemaCheck(const YAML::Node& d) : doc(d) {}

  const YAML::Node& doc;
  std::vector<std::string> problems;
  std::set<std::string> empty;   // arrays of objects seen empty, without indices
  std::set<std::string> filled;  // ... and seen with elements

  std::vector<std::string> Unchecked() const {
    std::vector<std::string> out;
    for (const std::string& e : empty)
      if (!filled.count(e)) out.push_back(e);
    return out;
  }

  void Validate(const YAML::Node& schema_in, const json& v, const std::string& at) {
    YAML::Node schema = Resolve(doc, schema_in);
    if (!schema.IsMap()) return;
    if (YAML::Node all = Child(schema, "allOf"); all.IsSequence())
      for (const auto& sub : all) Validate(sub, v, at);
    std::string type = Str(schema, "type");
    if (v.is_null()) {
      if (!type.empty() && !Flag(schema, "nullable")) problems.push_back(at + " is null, documented as " + type);
      return;
    }
    bool type_ok = type.empty() || (type == "object" && v.is_object()) || (type == "array" && v.is_array()) ||
                   (type == "string" && v.is_string()) || (type == "integer" && v.is_number_integer()) ||
                   (type == "number" && v.is_number()) || (type == "boolean" && v.is_boolean());
    if (!type_ok) {
      problems.push_back(at + " is " + v.type_name() + ", documented as " + type);
      return;
    }
    if (YAML::Node e = Child(schema, "enum"); e.IsSequence()) {
      bool found = false;
      for (const auto& x : e) found = found || YamlToJson(x) == v;
      if (!found) problems.push_back(at + " = " + v.dump() + " is not one of the documented values");
    }
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      if (std::string p = Str(schema, "pattern"); !p.empty() && !std::regex_search(s, std::regex(p)))
        problems.push_back(at + " = \"" + s + "\" does not match " + p);
      static const std::regex kDateTime(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$)");
      if (Str(schema, "format") == "date-time" && !std::regex_match(s, kDateTime))
        problems.push_back(at + " = \"" + s + "\" is not an ISO-8601 date-time");
    }
    if (v.is_object()) {
      if (YAML::Node req = Child(schema, "required"); req.IsSequence())
        for (const auto& r : req)
          if (!v.contains(r.as<std::string>())) problems.push_back(at + " lacks required property '" + r.as<std::string>() + "'");
      YAML::Node props = Child(schema, "properties");
      for (auto& [k, sub] : v.items()) {
        YAML::Node ps = props.IsMap() ? Child(props, k) : YAML::Node(YAML::NodeType::Undefined);
        if (ps.IsDefined()) Validate(ps, sub, at + "." + k);
        else if (Str(schema, "additionalProperties") == "false") problems.push_back(at + " has undocumented property '" + k + "'");
      }
    }
    if (v.is_array()) {
      YAML::Node items = Child(schema, "items");
      if (!items.IsDefined()) return;
      if (Str(Resolve(doc, items), "type") == "object") (v.empty() ? empty : filled).insert(WithoutIndices(at));
      for (size_t i = 0; i < v.size(); ++i) Validate(items, v[i], at + "[" + std::to_string(i) + "]");
    }
  }
};

// One operation of the document, with its path-level and own parameters resolved.
struct Operation {
  std::string path;    // as documented, e.g. /v1/cases/{case}/items
  std::string method;  // lower case, as in the document
  std::string id;      // operationId
  YAML::Node op;
  std::vector<YAML::Node> parameters;
  bool needs_token = false;
  // x-kring-system-access: a call of the client system itself (the change
  // feed), logged as such, with a token but no professional's headers.
  bool system_access = false;

  YAML::Node Response(const YAML::Node& doc, const std::string& status) const {
    return Resolve(doc, Child(Child(op, "responses"), status));
  }
  // The documented 2xx statuses.
  std::vector<std::string> SuccessStatuses() const {
    std::vector<std::string> out;
    for (const auto& kv : Child(op, "responses"))
      if (kv.first.as<std::string>().rfind('2', 0) == 0) out.push_back(kv.first.as<std::string>());
    return out;
  }
  std::vector<std::string> RequiredHeaders() const {
    std::vector<std::string> out;
    for (const YAML::Node& p : parameters)
      if (Str(p, "in") == "header" && Flag(p, "required")) out.push_back(Str(p, "name"));
    return out;
  }
  std::string Name() const { return Lower(method) + " " + path + " (" + id + ")"; }
  YAML::Node RequestBody(const YAML::Node& doc) const { return Resolve(doc, Child(op, "requestBody")); }
  YAML::Node RequestSchema(const YAML::Node& doc) const {
    return Child(Child(Child(RequestBody(doc), "content"), "application/json"), "schema");
  }
};

std::vector<Operation> Operations(const YAML::Node& doc) {
  std::vector<Operation> out;
  YAML::Node root_security = Child(doc, "security");
  for (const auto& p : Child(doc, "paths")) {
    const YAML::Node& item = p.second;
    for (const auto& m : item) {
      std::string method = m.first.as<std::string>();
      if (!kMethods.count(method)) continue;
      Operation o;
      o.path = p.first.as<std::string>();
      o.method = method;
      o.op.reset(m.second);
      o.id = Str(o.op, "operationId");
      for (const YAML::Node& level : {Child(item, "parameters"), Child(o.op, "parameters")})
        if (level.IsSequence())
          for (const auto& param : level) o.parameters.push_back(Resolve(doc, param));
      YAML::Node security = Child(o.op, "security").IsDefined() ? Child(o.op, "security") : root_security;
      o.needs_token = security.IsSequence() && security.size() > 0;
      o.system_access = Flag(o.op, "x-kring-system-access");
      out.push_back(std::move(o));
    }
  }
  return out;
}

// The error codes a documented response shows in its example(s).
std::set<std::string> DocumentedCodes(const YAML::Node& doc, const YAML::Node& response) {
  std::set<std::string> codes;
  YAML::Node media = Child(Child(response, "content"), "application/json");
  if (!media.IsMap()) return codes;
  auto add = [&](const YAML::Node& value) {
    json v = YamlToJson(value);
    if (v.is_object() && v.contains("error") && v["error"].is_string()) codes.insert(v["error"]);
  };
  if (Child(media, "example").IsDefined()) add(Child(media, "example"));
  if (YAML::Node examples = Child(media, "examples"); examples.IsMap())
    for (const auto& kv : examples) add(Child(Resolve(doc, kv.second), "value"));
  return codes;
}

// ---------------------------------------------------------------- the node

struct Reply {
  int status = 0;  // 0: no connection
  std::string content_type;
  std::string body;
  std::map<std::string, std::string> headers;  // Location, ETag, Allow
};

// application/json, and JSON under another name (application/fhir+json).
bool IsJsonMediaType(const std::string& type) {
  std::string t = NormalMediaType(type);
  t = t.substr(0, t.find(';'));
  return t == "application/json" || (t.size() > 5 && t.compare(t.size() - 5, 5, "+json") == 0);
}

// LocalCluster::Raw does not keep the Content-Type, and the document promises one per operation.
Reply Send(const kring::ClusterNode& n, const std::string& method, const std::string& target, const std::string& body,
           const std::map<std::string, std::string>& headers, const std::string& content_type = "application/json") {
  httplib::Client cli((n.tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(n.api_port));
  cli.enable_server_certificate_verification(false);  // LocalCluster's TLS nodes are self-signed
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(10, 0);
  httplib::Headers h(headers.begin(), headers.end());
  auto send = [&]() -> httplib::Result {
    if (method == "post") return cli.Post(target, h, body, content_type);
    if (method == "put") return cli.Put(target, h, body, content_type);
    if (method == "patch") return cli.Patch(target, h, body, content_type);
    if (method == "delete") return cli.Delete(target, h, body, content_type);
    return cli.Get(target, h);
  };
  httplib::Result res = send();
  Reply r;
  if (!res) return r;
  r.status = res->status;
  r.content_type = res->get_header_value("Content-Type");
  r.body = res->body;
  for (const char* h : {"Location", "ETag", "Allow"}) r.headers[h] = res->get_header_value(h);
  return r;
}

// Two partners, both running, and a case of the first, which holds regie,
// with what every operation needs: consents for the partner (one for the
// withdrawConsent example to end, one already withdrawn), a goal whose two
// concurrent edits are in conflict, and an action for the writeItem example
// to edit.
struct DocumentedNode {
  LocalCluster cluster{KRING_NODE_BINARY};
  std::string case_id;
  std::string consent_id;       // finances, active
  std::string withdrawable_id;  // housing, active until the withdrawConsent example ends it
  std::string goal_item;
  std::string action_version;
  // "kind/domain" -> the current versions of the setup's item of that kind and domain.
  std::map<std::string, std::vector<std::string>> current;

  DocumentedNode() {
    cluster.AddNode(kOrg, "Gemeente Deventer");
    cluster.AddNode(kPartner, "Wijkteam Deventer");
    REQUIRE(cluster.Connect(kOrg, kPartner));
    REQUIRE(cluster.Start(kOrg));
    REQUIRE(cluster.Start(kPartner));
    // A legal duty keeps what this organisation wrote through the erasure
    // request example, so the export after it still has a plan to check.
    REQUIRE(cluster.Cli({"retention", "--data", cluster.node(kOrg).data_dir, "--duty", "Wmo 2015=P15Y"}).exit_code == 0);
    case_id = Field(Post("/v1/cases", json{{"label", "dossier 2025-0173"}}), "case");
    consent_id = Grant("finances");
    withdrawable_id = Grant("housing");
    std::string ended = Grant("justice");
    Field(Post(CasePath("/consents/" + ended + "/withdraw"), std::nullopt), "withdrawal", 200);

    auto goal = [](const char* status, const char* description) {
      return json{{"description", description}, {"status", status}, {"target_date", "2027-03-01"}};
    };
    auto first = Post(CasePath("/items"), json{{"kind", "goal"}, {"domain", "finances"},
                                               {"data", goal("proposed", "Overzicht van alle schulden")}});
    goal_item = Field(first, "item");
    std::string v1 = Field(first, "version");
    // Two edits of the same version, neither seeing the other: the plan shows them in conflict.
    std::string a = Field(Post(CasePath("/items"), json{{"kind", "goal"}, {"domain", "finances"},
                                                         {"data", goal("active", "Overzicht van alle schulden")},
                                                         {"supersedes", {v1}}}), "version");
    std::string b = Field(Post(CasePath("/items"), json{{"kind", "goal"}, {"domain", "finances"},
                                                         {"data", goal("proposed", "Overzicht van alle schulden en achterstanden")},
                                                         {"supersedes", {v1}}}), "version");
    current["goal/finances"] = {a, b};
    action_version = Field(Post(CasePath("/items"), json{{"kind", "action"}, {"domain", "finances"},
                                                         {"data", {{"what", "Schuldeisers op een rij zetten"},
                                                                   {"who", {{"type", "organisation"}, {"org", kPartner}}},
                                                                   {"due_date", "2027-01-15"},
                                                                   {"status", "planned"},
                                                                   {"goal", goal_item}}}}), "version");
    current["action/finances"] = {action_version};
    // A version the partner signed whose body is no valid note: stored and
    // listed in the plan's `unreadable` (docs/plan.md, "Unreadable versions").
    auto partner = kring::ReadKeyFile(cluster.node(kPartner).data_dir + "/node.key");
    auto me = kring::CardFromJson(cluster.node(kOrg).card);
    REQUIRE(partner.ok());
    REQUIRE(me.ok());
    kring::FragmentDraft d;
    REQUIRE(kring::CaseIdFromHex(case_id, &d.case_id));
    d.kind = "note";
    d.domain = "finances";
    d.hlc = kring::MakeHlc(kring::HybridClock::SystemMillis(), 0);
    std::string text = R"({"text": 42})";
    d.body.assign(text.begin(), text.end());
    d.recipients = {*me};
    auto f = kring::SealFragment(d, *partner);
    REQUIRE(f.ok());
    kring::steps::PushAs(cluster, kPartner, kOrg, {kring::EncodeFragmentRecord(*f)});
    REQUIRE(LocalCluster::WaitFor([&] {
      auto plan = cluster.Call(kOrg, "GET", CasePath("/plan"));
      return plan.status == 200 && plan.body["unreadable"].size() == 1;
    }, 10000));
  }

  std::string CasePath(const std::string& rest) const { return "/v1/cases/" + case_id + rest; }

  kring::HttpReply Post(const std::string& path, const std::optional<json>& body) {
    return cluster.Call(kOrg, "POST", path, body);
  }

  std::string Grant(const std::string& domain) {
    return Field(Post(CasePath("/consents"),
                      json{{"grantee", kPartner}, {"domains", {domain}}, {"purpose", "ondersteuning"},
                           {"basis", "Wmo 2015 art. 5.1.1"}, {"valid_from", "2020-01-01"}, {"given_by", "burger"},
                           {"evidence", {{"kind", "attested"}, {"reference", "formulier 1"}}}}),
                 "consent");
  }

  static std::string Field(const kring::HttpReply& r, const std::string& key, int status = 201) {
    REQUIRE_MESSAGE(r.status == status, "setup call answered " << r.status << ": " << r.raw);
    REQUIRE(r.body.contains(key));
    return r.body[key].get<std::string>();
  }

  const kring::ClusterNode& api(const std::string& org = kOrg) { return cluster.node(org); }

  std::map<std::string, std::string> Headers(const std::string& org = kOrg) {
    return {{"Authorization", "Bearer " + cluster.node(org).token},
            {"X-Kring-Actor", "m.devries"},
            {"X-Kring-Actor-Name", "Marieke de Vries"},
            {"X-Kring-Role", "regisseur"},
            {"X-Kring-On-Behalf-Of", "Jeroen Bakker (wijkcoach)"}};
  }
};

// ---------------------------------------------------------------- example requests

// A valid request for one operation. Path parameters are filled in from the setup (Walk::PathValues).
struct Example {
  std::string query;
  std::optional<json> body;
};

// One example request per operationId. A new operation in docs/api.yaml needs its line here.
std::map<std::string, Example> ExampleRequests(const std::string& action_version) {
  return {
      {"getHealth", {}},
      {"getOpenApi", {}},
      {"getMetrics", {}},
      {"createCase", {"", json{{"label", "dossier 2025-0174"}}}},
      {"listCases", {"label=dossier%202025-0173&limit=10", std::nullopt}},
      {"recordConsent",
       {"", json{{"grantee", kPartner},
                 {"domains", {"daily-activities", "social-network"}},
                 {"purpose", "dagbesteding en netwerkversterking"},
                 {"basis", "Wmo 2015 art. 2.3.2"},
                 {"valid_from", "2026-01-01"},
                 {"valid_until", "2030-01-01T00:00:00Z"},
                 {"given_by", "wettelijk vertegenwoordiger"},
                 {"evidence", {{"kind", "attested"}, {"reference", "toestemmingsformulier 2025-0173-2"}}}}}},
      {"listConsents", {}},
      {"inviteCitizen", {"", json{{"given_by", "burger"}}}},
      {"withdrawConsent", {}},
      {"writeItem",
       {"", json{{"kind", "action"},
                 {"domain", "finances"},
                 {"data",
                  {{"what", "Schuldeisers op een rij zetten"},
                   {"who", {{"type", "organisation"}, {"org", kPartner}}},
                   {"due_date", "2027-01-15"},
                   {"status", "in-progress"}}},
                 {"supersedes", {action_version}}}}},
      {"getPlan", {}},
      {"getFhirCarePlan", {}},
      {"getAccessLog", {"from=2020-01-01T00:00:00Z&to=2100-01-01&limit=500", std::nullopt}},
      {"getCase", {}},
      {"getConsent", {}},
      {"getItem", {}},
      {"getChanges", {"limit=50", std::nullopt}},
      {"getFhirMetadata", {}},
      {"getFhirGoal", {}},
      {"getFhirConsent", {}},
      // In the document's order: close, put and lift a hold, an erasure request and its
      // answers, reopen, export (the case ends open).
      {"closeCase", {"", json{{"reason", "goals-reached"}, {"basis", "Wmo 2015 art. 2.3.5"}}}},
      {"putHold", {"", json{{"reason", "bezwaarprocedure 2027-17"}}}},
      {"liftHold", {}},
      {"requestErasure", {"", json{{"reference", "brief van de burger van 3 maart 2027"}}}},
      {"listErasureRequests", {}},
      {"reopenCase", {"", json{{"reason", "nieuwe hulpvraag"}}}},
      {"exportCase", {}},
  };
}

// The documented path with its {parameters} filled in; nullopt if one has no value.
std::optional<std::string> FillPath(std::string path, const std::map<std::string, std::string>& values) {
  for (auto& [name, value] : values)
    for (size_t at; (at = path.find("{" + name + "}")) != std::string::npos;) path.replace(at, name.size() + 2, value);
  if (path.find('{') != std::string::npos) return std::nullopt;
  return path;
}

struct Walk {
  YAML::Node doc = YAML::LoadFile(kDocPath);
  DocumentedNode node;
  std::map<std::string, Example> examples = ExampleRequests(node.action_version);

  // The path parameters of the examples: the setup's case and its consent to withdraw.
  std::map<std::string, std::string> PathValues() const {
    return {{"case", node.case_id}, {"consent", node.withdrawable_id}, {"item", node.goal_item}};
  }

  // Calls `fn(op, target, body)` for every documented operation that has an
  // example, with `values` (default PathValues()) in its path; fails for those that have none.
  template <typename Fn>
  void ForEach(Fn fn, std::optional<std::map<std::string, std::string>> values = std::nullopt) {
    if (!values) values = PathValues();
    for (const Operation& op : Operations(doc)) {
      INFO(op.Name());
      auto ex = examples.find(op.id);
      if (ex == examples.end()) {
        FAIL_CHECK("no example request for documented operation '" << op.id << "': add one to ExampleRequests");
        continue;
      }
      auto path = FillPath(op.path, *values);
      if (!path) {
        FAIL_CHECK("no value for a path parameter of " << op.path);
        continue;
      }
      std::stringstream query(ex->second.query);
      for (std::string pair; std::getline(query, pair, '&');) {
        std::string name = pair.substr(0, pair.find('='));
        bool documented = std::any_of(op.parameters.begin(), op.parameters.end(),
                                      [&](const YAML::Node& p) { return Str(p, "in") == "query" && Str(p, "name") == name; });
        CHECK_MESSAGE(documented, "the example sends query parameter '" << name << "', which is not documented");
      }
      std::string target = ex->second.query.empty() ? *path : *path + "?" + ex->second.query;
      fn(op, target, ex->second.body ? ex->second.body->dump() : std::string());
    }
  }

  Operation Find(const std::string& id) {
    for (const Operation& op : Operations(doc))
      if (op.id == id) return op;
    FAIL("docs/api.yaml has no operation " << id);
    return {};
  }

  // Checks an error reply against the operation's documented response for its status.
  void CheckError(const Operation& op, const Reply& r, const std::string& expected_code) {
    INFO(op.Name() << " answered " << r.status << ": " << r.body.substr(0, 300));
    YAML::Node response = op.Response(doc, std::to_string(r.status));
    if (!response.IsDefined()) {
      FAIL_CHECK("status " << r.status << " is not documented");
      return;
    }
    CHECK(NormalMediaType(r.content_type) == "application/json");
    json body = json::parse(r.body, nullptr, false);
    if (body.is_discarded()) {
      FAIL_CHECK("error body is not JSON");
      return;
    }
    SchemaCheck check{doc};
    check.Validate(Child(Child(Child(response, "content"), "application/json"), "schema"), body, "body");
    for (const std::string& p : check.problems) FAIL_CHECK(p);
    CHECK(body.value("error", "") == expected_code);
    std::set<std::string> codes = DocumentedCodes(doc, response);
    if (!codes.empty()) CHECK_MESSAGE(codes.count(body.value("error", "")), "error code not among the documented examples");
  }
};

}  // namespace

TEST_CASE("every reference in docs/api.yaml resolves and every operation has a unique id, a summary and responses") {
  YAML::Node doc = YAML::LoadFile(kDocPath);
  CHECK(Str(doc, "openapi") == "3.0.3");
  std::function<void(const YAML::Node&, const std::string&)> refs = [&](const YAML::Node& n, const std::string& at) {
    if (n.IsMap()) {
      for (const auto& kv : n) {
        std::string key = kv.first.as<std::string>();
        if (key == "$ref") CHECK_MESSAGE(Lookup(doc, kv.second.as<std::string>()).IsDefined(), at << ": " << kv.second.as<std::string>());
        else refs(kv.second, at + "/" + key);
      }
    } else if (n.IsSequence()) {
      for (size_t i = 0; i < n.size(); ++i) refs(n[i], at + "/" + std::to_string(i));
    }
  };
  refs(doc, "#");
  std::set<std::string> ids;
  std::vector<Operation> ops = Operations(doc);
  CHECK(ops.size() >= 12);
  for (const Operation& op : ops) {
    INFO(op.Name());
    CHECK(!op.id.empty());
    CHECK(ids.insert(op.id).second);
    CHECK(!Str(op.op, "summary").empty());
    CHECK(op.SuccessStatuses().size() == 1);
    if (op.needs_token) CHECK(op.Response(doc, "401").IsDefined());
    for (const auto& kv : Child(op.op, "responses")) {
      INFO("response " << kv.first.as<std::string>());
      YAML::Node content = Child(Resolve(doc, kv.second), "content");
      CHECK(content.IsMap());
      for (const auto& media : content) CHECK(Child(media.second, "schema").IsDefined());
    }
  }
}

TEST_CASE("every example in docs/api.yaml matches its own schema") {
  YAML::Node doc = YAML::LoadFile(kDocPath);
  SchemaCheck check{doc};
  int checked = 0;
  // Media type objects are where an example sits next to its schema.
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& n, const std::string& at) {
    if (n.IsMap()) {
      YAML::Node schema = Child(n, "schema");
      if (schema.IsDefined() && Child(n, "example").IsDefined()) {
        check.Validate(schema, YamlToJson(Child(n, "example")), at + "/example");
        ++checked;
      }
      if (schema.IsDefined() && Child(n, "examples").IsMap()) {
        for (const auto& kv : Child(n, "examples")) {
          check.Validate(schema, YamlToJson(Child(Resolve(doc, kv.second), "value")), at + "/examples/" + kv.first.as<std::string>());
          ++checked;
        }
      }
      for (const auto& kv : n) walk(kv.second, at + "/" + kv.first.as<std::string>());
    } else if (n.IsSequence()) {
      for (size_t i = 0; i < n.size(); ++i) walk(n[i], at + "/" + std::to_string(i));
    }
  };
  walk(Child(doc, "paths"), "#/paths");
  walk(Child(doc, "components"), "#/components");
  CHECK(checked > 20);
  for (const std::string& p : check.problems) FAIL_CHECK(p);
}

TEST_CASE("every documented operation has an example request in this test, and every example a documented operation") {
  YAML::Node doc = YAML::LoadFile(kDocPath);
  auto examples = ExampleRequests(std::string(64, '0'));
  std::set<std::string> documented;
  for (const Operation& op : Operations(doc)) {
    documented.insert(op.id);
    CHECK_MESSAGE(examples.count(op.id), "no example request for '" << op.id << "': add one to ExampleRequests");
  }
  for (auto& [id, ex] : examples) CHECK_MESSAGE(documented.count(id), "example for '" << id << "', which docs/api.yaml does not document");
}

TEST_CASE("every documented operation answers a valid request with its documented status, media type and required fields") {
  Walk w;
  w.ForEach([&](const Operation& op, const std::string& target, const std::string& body) {
    // The request itself must be what the document describes.
    YAML::Node request = op.RequestBody(w.doc);
    if (request.IsDefined()) {
      if (Flag(request, "required")) CHECK_MESSAGE(!body.empty(), "the document requires a body; the example has none");
      if (!body.empty()) {
        SchemaCheck check{w.doc};
        check.Validate(op.RequestSchema(w.doc), json::parse(body), "request");
        for (const std::string& p : check.problems) FAIL_CHECK("example " << p);
      }
    } else {
      CHECK_MESSAGE(body.empty(), "the example sends a body the document does not describe");
    }

    auto headers = op.needs_token ? w.node.Headers() : std::map<std::string, std::string>{};
    Reply r = Send(w.node.api(), op.method, target, body, headers);
    std::vector<std::string> success = op.SuccessStatuses();
    if (success.size() != 1) {
      FAIL_CHECK("documents " << success.size() << " success statuses, not one");
      return;
    }
    CHECK_MESSAGE(std::to_string(r.status) == success[0], "got " << r.status << ": " << r.body.substr(0, 300));
    if (std::to_string(r.status) != success[0]) return;

    // A Location or ETag the node sends is one the document promises, and the reverse.
    for (const char* h : {"Location", "ETag"}) {
      bool documented = Child(Child(op.Response(w.doc, success[0]), "headers"), h).IsDefined();
      CHECK_MESSAGE(documented == !r.headers[h].empty(), h << (documented ? " documented but not sent" : " sent but not documented"));
    }
    if (!r.headers["Location"].empty()) {
      Reply there = Send(w.node.api(), "get", r.headers["Location"], "", w.node.Headers());
      CHECK_MESSAGE(there.status == 200, "Location " << r.headers["Location"] << " answered " << there.status);
    }
    YAML::Node content = Child(op.Response(w.doc, success[0]), "content");
    YAML::Node media(YAML::NodeType::Undefined);
    for (const auto& kv : content)
      if (NormalMediaType(kv.first.as<std::string>()) == NormalMediaType(r.content_type)) media.reset(kv.second);
    CHECK_MESSAGE(media.IsDefined(), "Content-Type '" << r.content_type << "' is not documented");
    if (!media.IsDefined() || !IsJsonMediaType(r.content_type)) return;

    json reply = json::parse(r.body, nullptr, false);
    if (reply.is_discarded()) {
      FAIL_CHECK("body is not JSON: " << r.body.substr(0, 300));
      return;
    }
    SchemaCheck check{w.doc};
    check.Validate(Child(media, "schema"), reply, "body");
    for (const std::string& p : check.problems) FAIL_CHECK(p);
    // An empty list would leave its items unchecked: the setup must give every list something.
    for (const std::string& e : check.Unchecked()) FAIL_CHECK(e << " is empty, so its items went unchecked");
  });
}

TEST_CASE("every operation that needs a token refuses a call without one with a documented 401") {
  Walk w;
  int refused = 0;
  w.ForEach([&](const Operation& op, const std::string& target, const std::string& body) {
    if (!op.needs_token) return;
    CHECK(op.Response(w.doc, "401").IsDefined());
    auto headers = w.node.Headers();
    headers.erase("Authorization");
    Reply r = Send(w.node.api(), op.method, target, body, headers);
    CHECK(r.status == 401);
    w.CheckError(op, r, "unauthenticated");
    ++refused;
  });
  CHECK(refused >= 9);
}

TEST_CASE("every operation that needs an actor refuses a call without each actor header with a documented 400 missing_actor") {
  Walk w;
  int refused = 0;
  w.ForEach([&](const Operation& op, const std::string& target, const std::string& body) {
    std::vector<std::string> required = op.RequiredHeaders();
    bool needs_actor = std::find(required.begin(), required.end(), "X-Kring-Actor") != required.end();
    bool documents_missing_actor = DocumentedCodes(w.doc, op.Response(w.doc, "400")).count("missing_actor") > 0;
    CHECK_MESSAGE(needs_actor == documents_missing_actor,
                  "an operation requires X-Kring-Actor exactly when its 400 response documents missing_actor");
    CHECK_MESSAGE(needs_actor == (op.needs_token && !op.system_access),
                  "every operation with a token also names its actor, except a documented system access");
    for (const std::string& header : required) {
      INFO("without " << header);
      auto headers = w.node.Headers();
      headers.erase(header);
      Reply r = Send(w.node.api(), op.method, target, body, headers);
      CHECK(r.status == 400);
      std::string code = kActorHeaders.count(header) ? "missing_actor" : "";
      if (!code.empty()) w.CheckError(op, r, code);
      ++refused;
    }
    if (needs_actor) {
      INFO("with an actor name that is not UTF-8");
      auto headers = w.node.Headers();
      headers["X-Kring-Actor-Name"] = "Marieke de Vries \xc3\x28";
      Reply r = Send(w.node.api(), op.method, target, body, headers);
      CHECK(r.status == 400);
      w.CheckError(op, r, "missing_actor");
    }
  });
  CHECK(refused >= 27);
}

TEST_CASE("every operation that takes a body refuses one sent as another media type with a documented 415") {
  Walk w;
  int refused = 0;
  w.ForEach([&](const Operation& op, const std::string& target, const std::string& body) {
    if (!op.RequestBody(w.doc).IsDefined()) return;
    Reply r = Send(w.node.api(), op.method, target, body.empty() ? "{}" : body, w.node.Headers(), "text/plain");
    CHECK(r.status == 415);
    w.CheckError(op, r, "unsupported_media_type");
    ++refused;
  });
  CHECK(refused >= 4);
}

TEST_CASE("every operation whose body admits no other fields refuses an unknown one with a documented 400 unknown_field") {
  Walk w;
  int refused = 0;
  w.ForEach([&](const Operation& op, const std::string& target, const std::string& body) {
    YAML::Node schema = Resolve(w.doc, op.RequestSchema(w.doc));
    if (Str(schema, "additionalProperties") != "false") return;
    json with_typo = body.empty() ? json::object() : json::parse(body);
    with_typo["colour"] = "blue";
    Reply r = Send(w.node.api(), op.method, target, with_typo.dump(), w.node.Headers());
    CHECK(r.status == 400);
    w.CheckError(op, r, "unknown_field");
    ++refused;
  });
  CHECK(refused >= 4);
}

TEST_CASE("every operation on a case answers for a case this node does not know with a documented 404 not_found") {
  Walk w;
  int refused = 0;
  std::map<std::string, std::string> values = w.PathValues();
  values["case"] = "0123456789abcdef0123456789abcdef";
  w.ForEach(
      [&](const Operation& op, const std::string& target, const std::string& body) {
        if (op.path.find("{case}") == std::string::npos) return;
        Reply r = Send(w.node.api(), op.method, target, body, w.node.Headers());
        CHECK(r.status == 404);
        w.CheckError(op, r, "not_found");
        ++refused;
      },
      values);
  CHECK(refused >= 7);
}

TEST_CASE("the node accepts every request example in docs/api.yaml") {
  Walk w;
  int sent = 0;
  w.ForEach([&](const Operation& op, const std::string& target, const std::string&) {
    YAML::Node media = Child(Child(op.RequestBody(w.doc), "content"), "application/json");
    if (!media.IsMap()) return;
    std::vector<std::pair<std::string, json>> bodies;
    if (Child(media, "example").IsDefined()) bodies.emplace_back("example", YamlToJson(Child(media, "example")));
    if (YAML::Node examples = Child(media, "examples"); examples.IsMap())
      for (const auto& kv : examples)
        bodies.emplace_back(kv.first.as<std::string>(), YamlToJson(Child(Resolve(w.doc, kv.second), "value")));
    for (auto& [name, body] : bodies) {
      INFO("example '" << name << "'");
      // An edit in the document names versions that exist only there: edit the
      // setup's item of the same kind and domain instead.
      if (body.is_object() && body.contains("supersedes")) {
        auto it = w.node.current.find(body.value("kind", "") + "/" + body.value("domain", ""));
        if (it == w.node.current.end()) {
          FAIL_CHECK("the setup has no item of this kind and domain to edit");
          continue;
        }
        body["supersedes"] = it->second;
      }
      Reply r = Send(w.node.api(), op.method, target, body.dump(), w.node.Headers());
      CHECK_MESSAGE(std::to_string(r.status) == op.SuccessStatuses().at(0), "got " << r.status << ": " << r.body.substr(0, 300));
      ++sent;
    }
  });
  CHECK(sent >= 8);
}

TEST_CASE("the consent and plan rules answer with their documented 403, 404 and 409, and a case needs no body") {
  Walk w;
  DocumentedNode& n = w.node;
  const Operation record = w.Find("recordConsent");
  const Operation write = w.Find("writeItem");
  const Operation withdraw = w.Find("withdrawConsent");
  const std::string consents = n.CasePath("/consents");
  const std::string items = n.CasePath("/items");
  // The partner takes part in the case once its consents reach it, and knows
  // the justice consent ended once the withdrawal does (they may come apart).
  REQUIRE(LocalCluster::WaitFor([&] {
    auto r = n.cluster.Call(kPartner, "GET", consents);
    if (r.status != 200) return false;
    for (const json& c : r.body["consents"])
      if (c.value("status", "") == "withdrawn") return true;
    return false;
  }, 10000));
  // `call` answers with the `status` and `code` that `op` documents.
  auto expect = [&](const char* what, const Operation& op, const Reply& r, int status, const std::string& code) {
    INFO(what);
    CHECK(r.status == status);
    if (!code.empty()) w.CheckError(op, r, code);
  };

  json grant = *w.examples.at("recordConsent").body;
  expect("the partner, which does not hold regie, records a consent", record,
         Send(n.api(kPartner), "post", consents, grant.dump(), n.Headers(kPartner)), 403, "forbidden");
  grant["grantee"] = kOrg;
  expect("the regie organisation grants itself", record, Send(n.api(), "post", consents, grant.dump(), n.Headers()),
         403, "forbidden");

  json goal = {{"kind", "goal"}, {"domain", "justice"}, {"data", {{"description", "Geen nieuwe boetes"}, {"status", "proposed"}}}};
  expect("the partner writes in a domain its (withdrawn) consent no longer covers", write,
         Send(n.api(kPartner), "post", items, goal.dump(), n.Headers(kPartner)), 403, "forbidden");
  json regisseur = {{"kind", "regisseur"}, {"data", {{"org", kPartner}, {"person", "Sanne Bos"}}}};
  expect("the partner names the regisseur", write, Send(n.api(kPartner), "post", items, regisseur.dump(), n.Headers(kPartner)),
         403, "forbidden");
  json edit = {{"kind", "goal"},
               {"domain", "finances"},
               {"data", {{"description", "Overzicht van alle schulden"}, {"status", "achieved"}}},
               {"supersedes", {std::string(64, 'a')}}};
  expect("an edit of a version the node does not hold", write, Send(n.api(), "post", items, edit.dump(), n.Headers()),
         404, "not_found");

  expect("withdrawing a consent the case does not have", withdraw,
         Send(n.api(), "post", consents + "/" + std::string(64, 'b') + "/withdraw", "", n.Headers()), 404, "not_found");
  const std::string twice = consents + "/" + n.withdrawable_id + "/withdraw";
  expect("withdrawing a consent", withdraw, Send(n.api(), "post", twice, "", n.Headers()), 200, "");
  expect("withdrawing it again", withdraw, Send(n.api(), "post", twice, "{}", n.Headers()), 409, "conflict");
  expect("the grantee declines its own consent", withdraw,
         Send(n.api(kPartner), "post", consents + "/" + n.consent_id + "/withdraw", "", n.Headers(kPartner)), 200, "");

  expect("a case without a label, without a body", w.Find("createCase"), Send(n.api(), "post", "/v1/cases", "", n.Headers()),
         201, "");

  // The regie organisation's access log shows the partner's calls above too, from the signed copies its node sent.
  bool partner_entries = LocalCluster::WaitFor(
      [&] {
        Reply r = Send(n.api(), "get", n.CasePath("/access-log"), "", n.Headers());
        json log = json::parse(r.body, nullptr, false);
        if (r.status != 200 || !log.is_object() || !log["entries"].is_array()) return false;
        return std::any_of(log["entries"].begin(), log["entries"].end(),
                           [](const json& e) { return e.value("organisation", "") == kPartner; });
      },
      10000);
  CHECK_MESSAGE(partner_entries, "the regie organisation's access log shows none of the partner's entries");
}

TEST_CASE("the node serves docs/api.yaml byte for byte at /v1/openapi.yaml without a token") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode(kOrg, "Gemeente Deventer");
  REQUIRE(c.Start(kOrg));
  Reply r = Send(c.node(kOrg), "get", "/v1/openapi.yaml", "", {});
  CHECK(r.status == 200);
  CHECK(NormalMediaType(r.content_type) == "application/yaml");
  std::string file = Slurp(kDocPath);
  REQUIRE(!file.empty());
  CHECK(r.body.size() == file.size());
  // Name the first difference rather than print 30 KB twice.
  auto diff = std::mismatch(r.body.begin(), r.body.end(), file.begin(), file.end());
  size_t at = static_cast<size_t>(diff.first - r.body.begin());
  bool same = r.body == file;
  CHECK_MESSAGE(same, "first difference at byte " << at << ": served \"" << r.body.substr(at, 60) << "\", file \""
                                                  << file.substr(at, 60) << "\" (a node built before the last edit of docs/api.yaml?)");
}

TEST_CASE("every metric docs/api.yaml lists is exported at /metrics") {
  YAML::Node doc = YAML::LoadFile(kDocPath);
  std::string description = Str(Child(Child(Child(doc, "paths"), "/metrics"), "get"), "description");
  std::set<std::string> metrics;
  static const std::regex kMetric("`(kring_[a-z_]+)`");
  for (std::sregex_iterator it(description.begin(), description.end(), kMetric), end; it != end; ++it)
    metrics.insert((*it)[1]);
  CHECK(metrics.size() >= 7);
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode(kOrg, "Gemeente Deventer");
  REQUIRE(c.Start(kOrg));
  Reply r = Send(c.node(kOrg), "get", "/metrics", "", {});
  REQUIRE(r.status == 200);
  for (const std::string& m : metrics) CHECK_MESSAGE(r.body.find("# TYPE " + m + " ") != std::string::npos, m);
}

TEST_CASE("every documented operation refuses an unknown query parameter with a documented 400 unknown_parameter") {
  Walk w;
  int refused = 0;
  w.ForEach([&](const Operation& op, const std::string& target, const std::string& body) {
    std::string typo = target + (target.find('?') == std::string::npos ? "?" : "&") + "colour=blue";
    Reply r = Send(w.node.api(), op.method, typo, body, op.needs_token ? w.node.Headers() : std::map<std::string, std::string>{});
    CHECK(r.status == 400);
    w.CheckError(op, r, "unknown_parameter");
    ++refused;
  });
  CHECK(refused >= 20);
}

TEST_CASE("a documented path asked with an undocumented method is 405, and Allow lists exactly the documented methods") {
  Walk w;
  std::map<std::string, std::set<std::string>> methods;  // documented path -> its methods, upper case
  for (const Operation& op : Operations(w.doc)) {
    std::string m = op.method;
    for (char& ch : m) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    methods[op.path].insert(m);
  }
  int checked = 0;
  for (auto& [path, allowed] : methods) {
    INFO(path);
    auto target = FillPath(path, w.PathValues());
    REQUIRE(target);
    for (const std::string method : {"get", "post", "put", "delete", "patch"}) {
      std::string upper = method;
      for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (allowed.count(upper)) continue;
      Reply r = Send(w.node.api(), method, *target, method == "get" || method == "delete" ? "" : "{}", w.node.Headers());
      CHECK_MESSAGE(r.status == 405, method << " answered " << r.status);
      std::string expected;
      for (const char* m : {"GET", "POST", "DELETE"})
        if (allowed.count(m)) expected += (expected.empty() ? "" : ", ") + std::string(m);
      CHECK(r.headers["Allow"] == expected);
      CHECK(json::parse(r.body, nullptr, false).value("error", "") == "method_not_allowed");
      ++checked;
    }
  }
  CHECK(checked >= 40);
}

TEST_CASE("issue 16: a closed case answers writes and consents with a documented 409, a second close too, and reopens") {
  Walk w;
  DocumentedNode& n = w.node;
  auto expect = [&](const char* what, const Operation& op, const Reply& r, int status, const std::string& code) {
    INFO(what);
    CHECK(r.status == status);
    if (!code.empty()) w.CheckError(op, r, code);
  };
  const Operation close = w.Find("closeCase"), reopen = w.Find("reopenCase"), write = w.Find("writeItem"),
                  record = w.Find("recordConsent"), hold = w.Find("putHold"), lift = w.Find("liftHold");
  const std::string items = n.CasePath("/items");
  json note = {{"kind", "note"}, {"domain", "finances"}, {"data", {{"text", "na het sluiten"}}}};
  REQUIRE(LocalCluster::WaitFor([&] { return n.cluster.Call(kPartner, "GET", n.CasePath("/consents")).status == 200; }, 10000));
  expect("the partner closes the case", close,
         Send(n.api(kPartner), "post", n.CasePath("/close"), R"({"reason":"moved"})", n.Headers(kPartner)), 403, "forbidden");
  expect("a reason that is not one", close, Send(n.api(), "post", n.CasePath("/close"), R"({"reason":"klaar"})", n.Headers()),
         400, "invalid_argument");
  expect("reopening an open case", reopen, Send(n.api(), "post", n.CasePath("/reopen"), "", n.Headers()), 409, "conflict");
  expect("closing", close, Send(n.api(), "post", n.CasePath("/close"), R"({"reason":"moved"})", n.Headers()), 200, "");
  expect("closing again", close, Send(n.api(), "post", n.CasePath("/close"), R"({"reason":"moved"})", n.Headers()), 409, "conflict");
  expect("a note in the closed case", write, Send(n.api(), "post", items, note.dump(), n.Headers()), 409, "conflict");
  json grant = *w.examples.at("recordConsent").body;
  expect("a consent in the closed case", record, Send(n.api(), "post", n.CasePath("/consents"), grant.dump(), n.Headers()), 409,
         "conflict");
  Reply plan = Send(n.api(), "get", n.CasePath("/plan"), "", n.Headers());
  CHECK(plan.status == 200);
  CHECK(json::parse(plan.body)["status"] == "revoked");
  Reply fhir = Send(n.api(), "get", "/fhir/CarePlan/" + n.case_id, "", n.Headers());
  CHECK(json::parse(fhir.body)["status"] == "revoked");
  // The partner's node learns of the close and refuses its own writes too.
  CHECK(LocalCluster::WaitFor([&] { return Send(n.api(kPartner), "post", items, note.dump(), n.Headers(kPartner)).status == 409; }, 10000));

  expect("a hold", hold, Send(n.api(), "post", n.CasePath("/hold"), R"({"reason":"geschil"})", n.Headers()), 201, "");
  expect("a second hold", hold, Send(n.api(), "post", n.CasePath("/hold"), R"({"reason":"geschil"})", n.Headers()), 409, "already_exists");
  expect("lifting it", lift, Send(n.api(), "delete", n.CasePath("/hold"), "", n.Headers()), 200, "");
  expect("lifting it again", lift, Send(n.api(), "delete", n.CasePath("/hold"), "", n.Headers()), 404, "not_found");

  expect("reopening", reopen, Send(n.api(), "post", n.CasePath("/reopen"), "", n.Headers()), 200, "");
  expect("a note after the reopen", write, Send(n.api(), "post", items, note.dump(), n.Headers()), 201, "");
}
