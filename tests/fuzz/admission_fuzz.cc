// libFuzzer target: the admission model (tests/consent_model.h) driven by the fuzzer's bytes; any broken invariant aborts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/consent_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t at = 1;
  bool done = false;
  // Each choice takes two bytes; when they run out the run ends.
  auto next = [&]() -> uint32_t {
    if (at + 2 > size) {
      done = true;
      return 0;
    }
    uint32_t v = static_cast<uint32_t>(data[at]) | static_cast<uint32_t>(data[at + 1]) << 8;
    at += 2;
    return v;
  };
  auto check = [](bool ok, const char* invariant, const std::string& context) {
    if (ok) return;
    std::fprintf(stderr, "admission_fuzz: %s (after %s)\n", invariant, context.c_str());
    std::abort();
  };
  kring::model::Model m(data[0], next, check);
  for (int steps = 0; steps < 2000 && !done; ++steps) {
    std::string step = m.Step();
    m.CheckInvariants(step);
  }
  return 0;
}
