// kring-backup-timing: how long `kring-node backup` takes, and how big the file is, for a node holding N fragments.
//
// Fills a node directly (bench/fill.h: the node's own sealing and storing,
// sealed to one partner as well), then times BackupNode plain and
// encrypted, and RestoreNode of each, on the same machine. Prints figures;
// asserts nothing about them.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>
#include <sys/stat.h>

#include "bench/fill.h"
#include "node/backup.h"
#include "node/log.h"
#include "node/node.h"

namespace {

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int64_t FileBytes(const std::string& p) {
  struct stat sb {};
  return ::stat(p.c_str(), &sb) == 0 ? static_cast<int64_t>(sb.st_size) : -1;
}

int Fail(const std::string& what, const kring::Status& st) {
  std::fprintf(stderr, "kring-backup-timing: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kring;
  CLI::App app{"kring-backup-timing: times kring-node backup and restore for a node of N fragments"};
  size_t fragments = 100'000, body_bytes = 64, per_case = 100;
  app.add_option("--fragments", fragments, "Notes to fill the node with")->capture_default_str();
  app.add_option("--body-bytes", body_bytes, "Bytes of each note's JSON body")->capture_default_str();
  app.add_option("--per-case", per_case, "Notes per case")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  InitSodium();
  SetLogLevel(LogLevel::kWarn);  // the fill records a consent per case

  std::string root = "/tmp/kring-backup-timing-XXXXXX";
  if (mkdtemp(root.data()) == nullptr) return 1;
  const std::string a = root + "/a", b = root + "/b";
  auto pa = InitNode(a, "gemeente-a", "Gemeente A");
  auto pb = InitNode(b, "zorg-b", "Zorg B");
  if (!pa.ok() || !pb.ok()) return Fail("init", pa.ok() ? pb.status() : pa.status());
  {
    auto store = Store::Open(DatabasePath(a));
    if (!store.ok()) return Fail("open", store.status());
    Status st = (*store)->AddPartner(Partner{*pb, "tcp://127.0.0.1:1", 0});
    if (!st.ok()) return Fail("partner", st);
  }
  auto t = std::chrono::steady_clock::now();
  {
    auto fill = bench::DirectFill::Open(a);
    if (!fill.ok()) return Fail("fill", fill.status());
    std::vector<CaseId> cases;
    for (size_t i = 0; i < std::max<size_t>(1, fragments / per_case); ++i) {
      auto id = (*fill)->CreateCase("huishouden " + std::to_string(i));
      if (!id.ok()) return Fail("case", id.status());
      if (auto g = (*fill)->Grant(*id, "zorg-b", {"*"}); !g.ok()) return Fail("grant", g.status());
      cases.push_back(*id);
    }
    auto notes = (*fill)->WriteNotes(cases, fragments, body_bytes, 2);
    if (!notes.ok()) return Fail("notes", notes.status());
  }
  std::printf("filled: %zu fragments (%zu B bodies) in %.1f s; database %lld bytes\n", fragments, body_bytes, Since(t),
              static_cast<long long>(FileBytes(DatabasePath(a))));

  const std::string pass = "correct horse battery staple";
  for (bool encrypted : {false, true}) {
    const std::string file = root + (encrypted ? "/a.backup.enc" : "/a.backup");
    t = std::chrono::steady_clock::now();
    auto s = BackupNode(a, file, encrypted ? pass : "", static_cast<int64_t>(HybridClock::SystemMillis()));
    if (!s.ok()) return Fail("backup", s.status());
    const double backup_s = Since(t);
    t = std::chrono::steady_clock::now();
    auto r = RestoreNode(file, a, encrypted ? pass : "", static_cast<int64_t>(HybridClock::SystemMillis()));
    if (!r.ok()) return Fail("restore", r.status());
    std::printf("%s backup: %.2f s, %lld bytes (%.1f B/fragment); restore: %.2f s (both include the file's fsync)\n",
                encrypted ? "encrypted" : "plain    ", backup_s, static_cast<long long>(s->bytes),
                static_cast<double>(s->bytes) / static_cast<double>(fragments), Since(t));
  }
  std::system(("rm -rf " + root).c_str());
  return 0;
}
