// libFuzzer target: arbitrary bytes as an HTTP request to the node's API (headers, body, routes), and as a JSON body.
//
// The bytes go through a socket pair into ApiServer::ServeSocket: the same
// admission of headers, deadlines, httplib parsing and routes as a served
// connection, with a valid token known to the seeds ("krt_fuzz"), on a
// node in a temporary directory (in /dev/shm when there is one: every
// request writes the access log). Properties: the server answers or closes,
// never crashes; the answer is an HTTP status line; a body ParseApiBody
// accepts nests within kMaxApiJsonDepth and dumps to JSON that parses back equal.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include "node/api.h"
#include "node/node.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "api_fuzz: %s\n", why);
  std::abort();
}

constexpr const char* kToken = "krt_fuzz";

struct Fixture {
  std::string dir;
  std::unique_ptr<kring::Node> node;
  std::unique_ptr<kring::ApiServer> api;
};

Fixture& TheNode() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    std::string tmpl = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + std::string("/kring-api-fuzz-XXXXXX");
    if (!mkdtemp(tmpl.data())) Fail("mkdtemp failed");
    fx->dir = tmpl + "/node";
    static std::string root = tmpl;
    std::atexit([] { std::filesystem::remove_all(root); });  // libFuzzer exits through exit()
    if (!kring::InitNode(fx->dir, "gemeente-a", "Gemeente A").ok()) Fail("init failed");
    auto node = kring::Node::Open(fx->dir);
    if (!node.ok()) Fail("open failed");
    fx->node = std::move(*node);
    if (!fx->node->store().AddToken("fuzz", kring::HashApiToken(kToken), 0).ok()) Fail("token failed");
    fx->api = std::make_unique<kring::ApiServer>(fx->node.get());
    return fx;
  }();
  return *f;
}

std::string Request(const std::string& method, const std::string& path, const std::string& body) {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + kToken +
                  "\r\nX-Kring-Actor: p1\r\nX-Kring-Actor-Name: Fuzz\r\nX-Kring-Role: regisseur\r\n";
  if (!body.empty())
    r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

// Sends `input` as one connection's bytes and returns what the server wrote back.
std::string Exchange(const std::string& input) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) Fail("socketpair failed");
  std::string answer;
  std::thread client([&] {
    size_t off = 0;
    while (off < input.size()) {
      ssize_t n = send(sv[0], input.data() + off, input.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    shutdown(sv[0], SHUT_WR);
    char buf[65536];
    ssize_t n;
    while ((n = recv(sv[0], buf, sizeof buf, 0)) > 0) answer.append(buf, static_cast<size_t>(n));
    close(sv[0]);
  });
  TheNode().api->ServeSocket(sv[1]);  // closes sv[1]
  client.join();
  return answer;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const std::string c = "00112233445566778899aabbccddeeff";
  std::vector<std::string> seeds = {
      "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /metrics HTTP/1.1\r\n\r\n",
      Request("POST", "/v1/cases", "{\"label\":\"huishouden\"}"),
      Request("GET", "/v1/cases", ""),
      Request("POST", "/v1/cases/" + c + "/items", "{\"kind\":\"note\",\"domain\":\"housing\",\"data\":{\"text\":\"x\"}}"),
      Request("POST", "/v1/cases/" + c + "/consents",
              "{\"grantee\":\"wijkteam\",\"domains\":[\"*\"],\"purpose\":\"p\",\"basis\":\"b\",\"valid_from\":\"2020-01-01\","
              "\"given_by\":\"burger\",\"evidence\":{\"kind\":\"attested\",\"reference\":\"r\"}}"),
      Request("GET", "/v1/cases/" + c + "/plan", ""),
      Request("GET", "/v1/cases/" + c + "/access-log?from=2020-01-01", ""),
      Request("POST", "/v1/cases/" + c + "/items", "{\"data\":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}"),
      // Issue 14: the change feed, paging cursors, lookups, FHIR.
      Request("GET", "/v1/changes?since=c30303030303030303030303030303031&limit=5&wait=0", ""),
      Request("GET", "/v1/cases?label=x&limit=2&cursor=k3366", ""),
      Request("GET", "/v1/cases/" + c + "/access-log?limit=3&cursor=a30", ""),
      Request("GET", "/v1/cases/" + c + "/items/" + std::string(64, 'a'), ""),
      Request("GET", "/fhir/Consent/" + std::string(64, 'b'), ""),
      Request("GET", "/fhir/metadata", ""),
      Request("DELETE", "/v1/cases", ""),
      "POST /v1/cases HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n4\r\n{\"a\"\r\n0\r\n\r\n",
  };
  std::vector<kring::Bytes> bytes;
  for (const std::string& s : seeds) bytes.emplace_back(s.begin(), s.end());
  kring::fuzz::WriteSeedsIfEmpty(*argc, *argv, bytes);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);

  // The body checks alone, on the whole input.
  kring::ApiBody body = kring::ParseApiBody("application/json", input);
  if (body.status == 0) {
    if (!body.value.is_object()) Fail("an accepted body is not an object");
    std::string dumped = body.value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (!kring::JsonNestingWithin(dumped, kring::kMaxApiJsonDepth)) Fail("an accepted body nests too deep");
    if (nlohmann::json::parse(dumped, nullptr, false) != body.value) Fail("an accepted body does not round-trip");
  } else if (body.status != 400 && body.status != 413 && body.status != 415) {
    Fail("unexpected status for a body");
  }

  // The bytes as a connection to the API.
  std::string answer = Exchange(input);
  if (!answer.empty() && answer.rfind("HTTP/1.1 ", 0) != 0) Fail("the answer is not HTTP");
  return 0;
}
