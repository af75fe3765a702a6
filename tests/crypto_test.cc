// Unit tests of kring::crypto: identities and the key file, signatures, AEAD, sealed keys, slugs and hex.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>

#include "crypto/identity.h"
#include "crypto/primitives.h"
#include "crypto/sodium.h"
#include "crypto/status.h"

namespace kring {
namespace {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/kring-crypto-XXXXXX";
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

Bytes ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes `bytes` to a new file at `path` and sets its mode explicitly (not subject to the umask).
void WriteRaw(const std::string& path, ByteSpan bytes, mode_t mode = 0600) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    REQUIRE(out.good());
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
  }
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

ByteSpan AsBytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

bool SameSecret(const uint8_t* a, const uint8_t* b, size_t n) { return sodium_memcmp(a, b, n) == 0; }

ContentKey RandomContentKey() {
  ContentKey k;
  RandomBytes({k.data(), k.size()});
  return k;
}

Nonce RandomNonce() {
  Nonce n;
  RandomBytes(n);
  return n;
}

// Offset of the signing secret key inside a key file written for `id`
// ("KRINGKEY" version org_len org name_len name sign_sk ...).
size_t SignSecretOffset(const NodeIdentity& id) { return 8 + 1 + 1 + id.pub.org.size() + 1 + id.pub.display_name.size(); }

}  // namespace

TEST_CASE("a generated identity's public keys are derived from its secret keys") {
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  CHECK(id.pub.org == "gemeente-a");
  CHECK(id.pub.display_name == "Gemeente A");
  CHECK(SignPublicFromSecret(id.sign_sk) == id.pub.sign_pk);
  CHECK(BoxPublicFromSecret(id.box_sk) == id.pub.box_pk);
  CHECK(BoxPublicFromSecret(id.transport_sk) == id.pub.transport_pk);
}

TEST_CASE("two generated identities do not share any key") {
  NodeIdentity a = NodeIdentity::Generate("gemeente-a", "A");
  NodeIdentity b = NodeIdentity::Generate("gemeente-a", "A");
  CHECK(a.pub.sign_pk != b.pub.sign_pk);
  CHECK(a.pub.box_pk != b.pub.box_pk);
  CHECK(a.pub.transport_pk != b.pub.transport_pk);
  CHECK(a.pub.box_pk != a.pub.transport_pk);
}

TEST_CASE("WriteKeyFile creates the key file readable and writable by its owner only") {
  TempDir dir;
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  const std::string path = dir.File("node.key");
  const mode_t old_umask = ::umask(0);  // the file must be 0600 even under a permissive umask
  Status st = WriteKeyFile(path, id);
  ::umask(old_umask);
  REQUIRE(st.ok());
  CHECK(ModeOf(path) == 0600);
}

TEST_CASE("WriteKeyFile refuses to overwrite an existing key file") {
  TempDir dir;
  const std::string path = dir.File("node.key");
  NodeIdentity first = NodeIdentity::Generate("gemeente-a", "First");
  REQUIRE(WriteKeyFile(path, first).ok());
  const Bytes before = ReadAll(path);

  NodeIdentity second = NodeIdentity::Generate("gemeente-a", "Second");
  Status st = WriteKeyFile(path, second);
  CHECK(st.code() == Status::Code::kAlreadyExists);
  CHECK(ReadAll(path) == before);  // the first identity's keys are not lost
}

TEST_CASE("WriteKeyFile refuses an identity with an invalid organisation or display name") {
  TempDir dir;
  const std::string path = dir.File("node.key");
  SUBCASE("organisation") {
    NodeIdentity id = NodeIdentity::Generate("Gemeente A", "Gemeente A");
    CHECK(WriteKeyFile(path, id).code() == Status::Code::kInvalidArgument);
  }
  SUBCASE("display name") {
    NodeIdentity id = NodeIdentity::Generate("gemeente-a", "line\nbreak");
    CHECK(WriteKeyFile(path, id).code() == Status::Code::kInvalidArgument);
  }
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("ReadKeyFile returns the organisation, display name and every key that was written") {
  TempDir dir;
  const std::string path = dir.File("node.key");
  NodeIdentity id = NodeIdentity::Generate("zorg-b", "Zorgaanbieder B \xE2\x9C\x93");
  REQUIRE(WriteKeyFile(path, id).ok());

  Result<NodeIdentity> loaded = ReadKeyFile(path);
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().ToString());
  CHECK(loaded->pub.org == id.pub.org);
  CHECK(loaded->pub.display_name == id.pub.display_name);
  CHECK(loaded->pub.sign_pk == id.pub.sign_pk);
  CHECK(loaded->pub.box_pk == id.pub.box_pk);
  CHECK(loaded->pub.transport_pk == id.pub.transport_pk);
  CHECK(SameSecret(loaded->sign_sk.data(), id.sign_sk.data(), kSignSecretKeyBytes));
  CHECK(SameSecret(loaded->box_sk.data(), id.box_sk.data(), kBoxSecretKeyBytes));
  CHECK(SameSecret(loaded->transport_sk.data(), id.transport_sk.data(), kBoxSecretKeyBytes));
}

TEST_CASE("a signing key loaded from its key file makes signatures the original public key verifies") {
  TempDir dir;
  const std::string path = dir.File("node.key");
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  REQUIRE(WriteKeyFile(path, id).ok());
  Result<NodeIdentity> loaded = ReadKeyFile(path);
  REQUIRE(loaded.ok());

  Signature sig = Sign("kring/test/v1", AsBytes("plan"), loaded->sign_sk);
  CHECK(Verify("kring/test/v1", AsBytes("plan"), sig, id.pub.sign_pk));
}

TEST_CASE("a content key sealed to an identity opens with the same identity loaded from its key file") {
  TempDir dir;
  const std::string path = dir.File("node.key");
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  REQUIRE(WriteKeyFile(path, id).ok());
  Result<NodeIdentity> loaded = ReadKeyFile(path);
  REQUIRE(loaded.ok());

  ContentKey key = RandomContentKey();
  SealedKey sealed = SealKey(key, id.pub.box_pk);
  ContentKey opened;
  REQUIRE(OpenSealedKey(sealed, loaded->pub.box_pk, loaded->box_sk, &opened).ok());
  CHECK(SameSecret(opened.data(), key.data(), kContentKeyBytes));
}

TEST_CASE("ReadKeyFile refuses a key file that others may read or write") {
  TempDir dir;
  const std::string path = dir.File("node.key");
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  REQUIRE(WriteKeyFile(path, id).ok());

  mode_t mode = 0;
  SUBCASE("group readable (0640)") { mode = 0640; }
  SUBCASE("world readable (0644)") { mode = 0644; }
  SUBCASE("group writable only (0620)") { mode = 0620; }
  SUBCASE("world readable only (0604)") { mode = 0604; }
  REQUIRE(::chmod(path.c_str(), mode) == 0);

  Result<NodeIdentity> loaded = ReadKeyFile(path);
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.status().code() == Status::Code::kPermissionDenied);
  CHECK(loaded.status().message().find("chmod 600") != std::string::npos);
}

TEST_CASE("ReadKeyFile accepts an owner-only key file that is read-only (0400)") {
  TempDir dir;
  const std::string path = dir.File("node.key");
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  REQUIRE(WriteKeyFile(path, id).ok());
  REQUIRE(::chmod(path.c_str(), 0400) == 0);
  Result<NodeIdentity> loaded = ReadKeyFile(path);
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().ToString());
  CHECK(loaded->pub.sign_pk == id.pub.sign_pk);
}

TEST_CASE("ReadKeyFile reports a missing key file as NotFound") {
  TempDir dir;
  Result<NodeIdentity> loaded = ReadKeyFile(dir.File("absent.key"));
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.status().code() == Status::Code::kNotFound);
}

TEST_CASE("ReadKeyFile rejects every truncated prefix of a key file as Corruption") {
  TempDir dir;
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  const std::string good = dir.File("good.key");
  REQUIRE(WriteKeyFile(good, id).ok());
  const Bytes full = ReadAll(good);
  REQUIRE(full.size() == SignSecretOffset(id) + kSignSecretKeyBytes + 2 * kBoxSecretKeyBytes);

  for (size_t len = 0; len < full.size(); ++len) {
    CAPTURE(len);
    const std::string path = dir.File("prefix-" + std::to_string(len) + ".key");
    WriteRaw(path, ByteSpan(full).first(len));
    Result<NodeIdentity> loaded = ReadKeyFile(path);
    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.status().code() == Status::Code::kCorruption);
  }
}

TEST_CASE("ReadKeyFile rejects a key file with trailing bytes as Corruption") {
  TempDir dir;
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  const std::string good = dir.File("good.key");
  REQUIRE(WriteKeyFile(good, id).ok());
  Bytes bytes = ReadAll(good);

  size_t extra = 0;
  SUBCASE("one byte") { extra = 1; }
  SUBCASE("beyond the largest possible key file") { extra = 4096; }
  bytes.insert(bytes.end(), extra, 0);
  const std::string path = dir.File("trailing.key");
  WriteRaw(path, bytes);
  Result<NodeIdentity> loaded = ReadKeyFile(path);
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.status().code() == Status::Code::kCorruption);
}

TEST_CASE("ReadKeyFile rejects a file that is not a version 1 kring key file as Corruption") {
  TempDir dir;
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  const std::string good = dir.File("good.key");
  REQUIRE(WriteKeyFile(good, id).ok());
  Bytes bytes = ReadAll(good);

  SUBCASE("wrong magic") { bytes[0] = 'X'; }
  SUBCASE("last magic byte wrong") { bytes[7] ^= 0x20; }
  SUBCASE("unknown version") { bytes[8] = 2; }
  SUBCASE("organisation length pointing past the end") { bytes[9] = 0xff; }
  SUBCASE("organisation that is not a slug") { bytes[10] = 'G'; }
  const std::string path = dir.File("bad.key");
  WriteRaw(path, bytes);
  Result<NodeIdentity> loaded = ReadKeyFile(path);
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.status().code() == Status::Code::kCorruption);
}

// An Ed25519 secret key is seed || public key. A damaged second half would
// make the node advertise a public key its own signatures do not verify under.
TEST_CASE("ReadKeyFile rejects a key file whose signing key does not match its public half") {
  TempDir dir;
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  const std::string good = dir.File("good.key");
  REQUIRE(WriteKeyFile(good, id).ok());
  Bytes bytes = ReadAll(good);
  bytes[SignSecretOffset(id) + 32] ^= 0x01;  // first byte of the embedded public key
  const std::string path = dir.File("mismatch.key");
  WriteRaw(path, bytes);
  Result<NodeIdentity> loaded = ReadKeyFile(path);
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.status().code() == Status::Code::kCorruption);
}

TEST_CASE("a signature verifies only under the context it was made in") {
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "A");
  Signature sig = Sign("kring/fragment/v1", AsBytes("message"), id.sign_sk);
  CHECK(Verify("kring/fragment/v1", AsBytes("message"), sig, id.pub.sign_pk));
  CHECK_FALSE(Verify("kring/consent/v1", AsBytes("message"), sig, id.pub.sign_pk));
  CHECK_FALSE(Verify("", AsBytes("message"), sig, id.pub.sign_pk));
  // The context is length-prefixed, so moving bytes between context and message is not a match.
  CHECK_FALSE(Verify("kring/fragment/v", AsBytes("1message"), sig, id.pub.sign_pk));
}

TEST_CASE("a signature does not verify for another message or another signer's key") {
  NodeIdentity id = NodeIdentity::Generate("gemeente-a", "A");
  NodeIdentity other = NodeIdentity::Generate("gemeente-b", "B");
  Signature sig = Sign("ctx", AsBytes("message"), id.sign_sk);
  CHECK_FALSE(Verify("ctx", AsBytes("messagE"), sig, id.pub.sign_pk));
  CHECK_FALSE(Verify("ctx", AsBytes("message"), sig, other.pub.sign_pk));
  Signature flipped = sig;
  flipped[10] ^= 0x01;
  CHECK_FALSE(Verify("ctx", AsBytes("message"), flipped, id.pub.sign_pk));
}

TEST_CASE("HashParts separates contexts and covers every part") {
  const Bytes a{1, 2, 3};
  const Bytes b{4, 5};
  Hash h = HashParts("kring/fragment/v1", {a, b});
  CHECK(h == HashParts("kring/fragment/v1", {a, b}));
  CHECK(h != HashParts("kring/log/v1", {a, b}));
  CHECK(h != HashParts("kring/fragment/v1", {a}));
  CHECK(h != HashParts("kring/fragment/v1", {b, a}));
}

TEST_CASE("AeadDecrypt returns the plaintext under the key, nonce and associated data it was sealed with") {
  ContentKey key = RandomContentKey();
  Nonce nonce = RandomNonce();
  const Bytes ad{'h', 'd', 'r'};
  SUBCASE("non-empty plaintext") {
    const Bytes plain{'p', 'l', 'a', 'n'};
    Bytes ct = AeadEncrypt(key, nonce, ad, plain);
    CHECK(ct.size() == plain.size() + kAeadTagBytes);
    Result<Bytes> out = AeadDecrypt(key, nonce, ad, ct);
    REQUIRE(out.ok());
    CHECK(*out == plain);
  }
  SUBCASE("empty plaintext") {
    Bytes ct = AeadEncrypt(key, nonce, ad, {});
    CHECK(ct.size() == kAeadTagBytes);
    Result<Bytes> out = AeadDecrypt(key, nonce, ad, ct);
    REQUIRE(out.ok());
    CHECK(out->empty());
  }
}

TEST_CASE("AeadDecrypt rejects a ciphertext with any byte changed") {
  ContentKey key = RandomContentKey();
  Nonce nonce = RandomNonce();
  const Bytes ad{'h', 'd', 'r'};
  const Bytes plain{'z', 'o', 'r', 'g', 'p', 'l', 'a', 'n'};
  const Bytes ct = AeadEncrypt(key, nonce, ad, plain);
  for (size_t i = 0; i < ct.size(); ++i) {  // body and tag alike
    CAPTURE(i);
    Bytes bad = ct;
    bad[i] ^= 0x80;
    Result<Bytes> out = AeadDecrypt(key, nonce, ad, bad);
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == Status::Code::kCorruption);
  }
}

TEST_CASE("AeadDecrypt rejects changed associated data, another key or another nonce") {
  ContentKey key = RandomContentKey();
  Nonce nonce = RandomNonce();
  const Bytes ad{'h', 'd', 'r'};
  const Bytes plain{'p', 'l', 'a', 'n'};
  const Bytes ct = AeadEncrypt(key, nonce, ad, plain);

  SUBCASE("associated data changed") {
    Bytes bad_ad = ad;
    bad_ad[1] ^= 0x01;
    CHECK(AeadDecrypt(key, nonce, bad_ad, ct).status().code() == Status::Code::kCorruption);
  }
  SUBCASE("associated data dropped") {
    CHECK(AeadDecrypt(key, nonce, {}, ct).status().code() == Status::Code::kCorruption);
  }
  SUBCASE("wrong key") {
    ContentKey other = RandomContentKey();
    CHECK(AeadDecrypt(other, nonce, ad, ct).status().code() == Status::Code::kCorruption);
  }
  SUBCASE("wrong nonce") {
    Nonce other = nonce;
    other[0] ^= 0x01;
    CHECK(AeadDecrypt(key, other, ad, ct).status().code() == Status::Code::kCorruption);
  }
  SUBCASE("ciphertext shorter than a tag") {
    CHECK(AeadDecrypt(key, nonce, ad, ByteSpan(ct).first(kAeadTagBytes - 1)).status().code() ==
          Status::Code::kCorruption);
  }
}

TEST_CASE("a sealed content key opens only with the recipient's key pair") {
  NodeIdentity alice = NodeIdentity::Generate("gemeente-a", "A");
  NodeIdentity bob = NodeIdentity::Generate("zorg-b", "B");
  ContentKey key = RandomContentKey();
  SealedKey sealed = SealKey(key, alice.pub.box_pk);

  ContentKey opened;
  REQUIRE(OpenSealedKey(sealed, alice.pub.box_pk, alice.box_sk, &opened).ok());
  CHECK(SameSecret(opened.data(), key.data(), kContentKeyBytes));

  SUBCASE("another organisation's key pair") {
    ContentKey wrong;
    CHECK(OpenSealedKey(sealed, bob.pub.box_pk, bob.box_sk, &wrong).code() == Status::Code::kCorruption);
  }
  SUBCASE("the recipient's public key with another secret key") {
    ContentKey wrong;
    CHECK(OpenSealedKey(sealed, alice.pub.box_pk, bob.box_sk, &wrong).code() == Status::Code::kCorruption);
  }
  SUBCASE("another public key with the recipient's secret key") {
    ContentKey wrong;
    CHECK(OpenSealedKey(sealed, bob.pub.box_pk, alice.box_sk, &wrong).code() == Status::Code::kCorruption);
  }
}

TEST_CASE("a sealed content key with any byte changed does not open, and leaves no key behind") {
  NodeIdentity alice = NodeIdentity::Generate("gemeente-a", "A");
  ContentKey key = RandomContentKey();
  const SealedKey sealed = SealKey(key, alice.pub.box_pk);
  const ContentKey zero;
  for (size_t i = 0; i < sealed.size(); ++i) {
    CAPTURE(i);
    SealedKey bad = sealed;
    bad[i] ^= 0x01;
    ContentKey out;
    RandomBytes({out.data(), out.size()});
    CHECK(OpenSealedKey(bad, alice.pub.box_pk, alice.box_sk, &out).code() == Status::Code::kCorruption);
    CHECK(SameSecret(out.data(), zero.data(), kContentKeyBytes));
  }
}

TEST_CASE("IsValidOrgSlug accepts 2 to 64 characters of [a-z0-9-]") {
  CHECK(IsValidOrgSlug("ab"));
  CHECK(IsValidOrgSlug("gemeente-utrecht"));
  CHECK(IsValidOrgSlug("ggd-2"));
  CHECK(IsValidOrgSlug("--"));
  CHECK(IsValidOrgSlug("0123456789"));
  CHECK(IsValidOrgSlug(std::string(64, 'z')));
}

TEST_CASE("IsValidOrgSlug rejects slugs of the wrong length or with other characters") {
  CHECK_FALSE(IsValidOrgSlug(""));
  CHECK_FALSE(IsValidOrgSlug("a"));
  CHECK_FALSE(IsValidOrgSlug(std::string(65, 'z')));
  CHECK_FALSE(IsValidOrgSlug("Gemeente"));
  CHECK_FALSE(IsValidOrgSlug("gemeente_a"));
  CHECK_FALSE(IsValidOrgSlug("gemeente a"));
  CHECK_FALSE(IsValidOrgSlug("gemeente.a"));
  CHECK_FALSE(IsValidOrgSlug("gemeente/a"));
  CHECK_FALSE(IsValidOrgSlug("ge\xC3\xABmeente"));  // non-ASCII
  CHECK_FALSE(IsValidOrgSlug(std::string_view("ab\0c", 4)));
}

TEST_CASE("IsValidDisplayName accepts 1 to 128 bytes without control characters") {
  CHECK(IsValidDisplayName("A"));
  CHECK(IsValidDisplayName("Zorgaanbieder B \xE2\x9C\x93"));
  CHECK(IsValidDisplayName(std::string(128, 'x')));
  CHECK_FALSE(IsValidDisplayName(""));
  CHECK_FALSE(IsValidDisplayName(std::string(129, 'x')));
  CHECK_FALSE(IsValidDisplayName("line\nbreak"));
  CHECK_FALSE(IsValidDisplayName("del\x7f"));
  CHECK_FALSE(IsValidDisplayName(std::string_view("nul\0", 4)));
}

TEST_CASE("ToHex and FromHex round trip") {
  const std::array<uint8_t, 5> bytes{0x00, 0x01, 0xab, 0xcd, 0xff};
  CHECK(ToHex(bytes) == "0001abcdff");
  std::array<uint8_t, 5> out{};
  REQUIRE(FromHex("0001abcdff", out));
  CHECK(out == bytes);
  REQUIRE(FromHex("0001ABCDFF", out));
  CHECK(out == bytes);
  CHECK(ToHex({}).empty());
}

TEST_CASE("FromHex rejects input of the wrong length or with non-hex characters") {
  std::array<uint8_t, 2> out{};
  CHECK_FALSE(FromHex("", out));
  CHECK_FALSE(FromHex("abc", out));
  CHECK_FALSE(FromHex("abcdef", out));
  CHECK_FALSE(FromHex("abcg", out));
  CHECK_FALSE(FromHex("ab d", out));
  CHECK_FALSE(FromHex("ab:d", out));
  CHECK_FALSE(FromHex("0x12", out));
  CHECK_FALSE(FromHex(std::string_view("ab\0d", 4), out));
}

TEST_CASE("ConstantTimeEqual is false for different lengths or contents") {
  const Bytes a{1, 2, 3};
  CHECK(ConstantTimeEqual(a, Bytes{1, 2, 3}));
  CHECK_FALSE(ConstantTimeEqual(a, Bytes{1, 2, 4}));
  CHECK_FALSE(ConstantTimeEqual(a, Bytes{1, 2}));
}

TEST_CASE("Status names its code and keeps its message") {
  CHECK(Status::Ok().ok());
  CHECK(Status::Ok().ToString() == "ok");
  Status st = Status::Corruption("bad tag");
  CHECK_FALSE(st.ok());
  CHECK(st.ToString() == "corruption: bad tag");
  Result<int> r = Status::NotFound("missing");
  CHECK_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kNotFound);
}

}  // namespace kring
