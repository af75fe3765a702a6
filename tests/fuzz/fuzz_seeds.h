// Seeds a libFuzzer target's corpus from within the target: on first run an empty or missing corpus directory gets a few valid encodings.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "crypto/identity.h"
#include "crypto/primitives.h"
#include "crypto/sodium.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"

namespace kring::fuzz {

// The first argument that is not a flag is the corpus directory libFuzzer
// will read and extend. Writes `seeds` into it when it is missing or empty;
// never touches a corpus that already has entries.
inline void WriteSeedsIfEmpty(int argc, char** argv, const std::vector<Bytes>& seeds) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.empty() || arg[0] == '-') continue;
    std::error_code ec;
    std::filesystem::path dir(arg);
    if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) return;  // a crash file to replay
    std::filesystem::create_directories(dir, ec);
    if (!std::filesystem::is_empty(dir, ec) || ec) return;
    for (size_t n = 0; n < seeds.size(); ++n) {
      std::filesystem::path file = dir / ("seed-" + std::to_string(n));
      if (std::FILE* f = std::fopen(file.c_str(), "wb")) {
        std::fwrite(seeds[n].data(), 1, seeds[n].size(), f);
        std::fclose(f);
      }
    }
    return;
  }
}

// An identity derived from a fixed seed byte, so every run of a target (and
// the seeds it wrote on an earlier run) uses the same keys.
inline NodeIdentity FixedIdentity(const std::string& org, uint8_t seed_byte) {
  InitSodium();
  NodeIdentity id;
  id.pub.org = org;
  id.pub.display_name = org;
  uint8_t seed[32];
  for (uint8_t& b : seed) b = seed_byte;
  crypto_sign_seed_keypair(id.pub.sign_pk.data(), id.sign_sk.data(), seed);
  seed[0] ^= 1;
  crypto_box_seed_keypair(id.pub.box_pk.data(), id.box_sk.data(), seed);
  seed[0] ^= 2;
  crypto_box_seed_keypair(id.pub.transport_pk.data(), id.transport_sk.data(), seed);
  return id;
}

// Encoded records of a few fragments `author` wrote, with and without a second recipient.
inline std::vector<Bytes> SampleFragmentRecords(const NodeIdentity& author, const PublicIdentity& other) {
  std::vector<Bytes> out;
  for (int i = 0; i < 3; ++i) {
    FragmentDraft d;
    d.case_id = NewCaseId();
    d.kind = i == 0 ? "hulpvraag" : "doel";
    d.domain = i == 1 ? "" : "wonen";
    d.hlc = MakeHlc(1'700'000'000'000ull + i, static_cast<uint16_t>(i));
    for (int p = 0; p < i; ++p) d.predecessors.push_back(HashParts("seed", {Bytes{static_cast<uint8_t>(p)}}));
    if (i > 0) d.item = HashParts("seed-item", {Bytes{static_cast<uint8_t>(i)}});
    d.body = Bytes(static_cast<size_t>(10 * i), static_cast<uint8_t>('a' + i));
    if (i != 0) d.recipients.push_back(other);
    Result<Fragment> f = SealFragment(d, author);
    if (f.ok()) out.push_back(EncodeFragmentRecord(*f));
  }
  return out;
}

}  // namespace kring::fuzz
