// Model-based test of the admission rule (tests/consent_model.h), run for a bounded number of steps in CI.
//
// KRING_MODEL_STEPS (default 3000 per seed) and KRING_MODEL_SEEDS (default 4)
// let a longer run go on outside CI; tests/fuzz/admission_fuzz.cc drives the
// same model from a fuzzer's bytes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "tests/consent_model.h"

namespace kring {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

TEST_CASE("issue 10: model: random interleavings of honest and hostile records keep the four invariants") {
  const int steps = EnvInt("KRING_MODEL_STEPS", 3000);
  const int seeds = EnvInt("KRING_MODEL_SEEDS", 4);
  size_t total_steps = 0, refused = 0, admitted = 0, attacks = 0, moves = 0;
  std::map<std::string, size_t> reasons;
  for (int seed = 1; seed <= seeds; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(static_cast<uint32_t>(seed));
    size_t failures = 0;
    model::Model m(static_cast<uint8_t>(seed), [&] { return static_cast<uint32_t>(rng()); },
                   [&](bool ok, const char* invariant, const std::string& context) {
                     if (ok || failures++ > 20) return;  // the first few tell the story
                     FAIL_CHECK(invariant << " (after " << context << ")");
                   });
    for (int i = 0; i < steps; ++i) {
      std::string step = m.Step();
      m.CheckInvariants(step);
      ++total_steps;
    }
    refused += m.refused();
    admitted += m.admitted();
    attacks += m.attacks();
    moves += m.regie_moves();
    for (auto& [r, n] : m.reasons()) reasons[r] += n;
  }
  std::ostringstream why;
  for (auto& [r, n] : reasons) why << " " << r << "=" << n;
  MESSAGE(total_steps << " steps: " << admitted << " records admitted, " << refused << " refused (" << why.str()
                      << "), " << attacks << " attacks, " << moves << " regie moves seen");
  // Guards the model against exercising nothing.
  CHECK(admitted > 100);
  CHECK(reasons["forked_chain"] > 0);
  CHECK(reasons["late_write"] + reasons["forged_record"] > 0);
  CHECK(moves > 0);
}

}  // namespace
}  // namespace kring
