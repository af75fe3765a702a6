// kring's contract over libsodium: named sizes pinned at compile time, byte types, wiped secrets, randomness.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sodium.h>

namespace kring {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

inline constexpr size_t kSignPublicKeyBytes = 32;
inline constexpr size_t kSignSecretKeyBytes = 64;
inline constexpr size_t kSignatureBytes = 64;
inline constexpr size_t kBoxPublicKeyBytes = 32;
inline constexpr size_t kBoxSecretKeyBytes = 32;
inline constexpr size_t kSealOverheadBytes = 48;  // ephemeral key + MAC of a sealed box
inline constexpr size_t kContentKeyBytes = 32;
inline constexpr size_t kSealedKeyBytes = kContentKeyBytes + kSealOverheadBytes;
inline constexpr size_t kAeadNonceBytes = 24;
inline constexpr size_t kAeadTagBytes = 16;
inline constexpr size_t kHashBytes = 32;

static_assert(kSignPublicKeyBytes == crypto_sign_PUBLICKEYBYTES);
static_assert(kSignSecretKeyBytes == crypto_sign_SECRETKEYBYTES);
static_assert(kSignatureBytes == crypto_sign_BYTES);
static_assert(kBoxPublicKeyBytes == crypto_box_PUBLICKEYBYTES);
static_assert(kBoxSecretKeyBytes == crypto_box_SECRETKEYBYTES);
static_assert(kSealOverheadBytes == crypto_box_SEALBYTES);
static_assert(kContentKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kAeadNonceBytes == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(kAeadTagBytes == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(kHashBytes >= crypto_generichash_BYTES_MIN && kHashBytes <= crypto_generichash_BYTES_MAX);

using SignPublicKey = std::array<uint8_t, kSignPublicKeyBytes>;
using BoxPublicKey = std::array<uint8_t, kBoxPublicKeyBytes>;
using Signature = std::array<uint8_t, kSignatureBytes>;
using Hash = std::array<uint8_t, kHashBytes>;
using Nonce = std::array<uint8_t, kAeadNonceBytes>;
using SealedKey = std::array<uint8_t, kSealedKeyBytes>;

// Initialises libsodium once; aborts the process if the library cannot start
// (no usable randomness), since nothing else can be done safely then.
void InitSodium();

// Fills `out` with cryptographically secure random bytes.
void RandomBytes(std::span<uint8_t> out);

// Secret key material of N bytes. Wiped with sodium_memzero when destroyed
// or overwritten, locked in memory where the OS allows.
template <size_t N>
class Secret {
 public:
  Secret() { sodium_mlock(bytes_.data(), N); }
  Secret(const Secret& o) : Secret() { bytes_ = o.bytes_; }
  Secret& operator=(const Secret& o) {
    bytes_ = o.bytes_;
    return *this;
  }
  ~Secret() { sodium_munlock(bytes_.data(), N); }  // munlock also zeroes

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  static constexpr size_t size() { return N; }
  std::span<const uint8_t, N> span() const { return std::span<const uint8_t, N>(bytes_); }
  void Wipe() { sodium_memzero(bytes_.data(), N); }

 private:
  std::array<uint8_t, N> bytes_{};
};

using SignSecretKey = Secret<kSignSecretKeyBytes>;
using BoxSecretKey = Secret<kBoxSecretKeyBytes>;
using ContentKey = Secret<kContentKeyBytes>;

// Lower-case hex of `bytes`.
std::string ToHex(ByteSpan bytes);
// Parses exactly `out.size()` bytes of hex; false on any other input.
bool FromHex(std::string_view hex, std::span<uint8_t> out);

// Compares two equal-length byte strings in constant time.
bool ConstantTimeEqual(ByteSpan a, ByteSpan b);

}  // namespace kring
