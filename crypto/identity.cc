// Key generation and the owner-only key file of a node.
#include "crypto/identity.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/primitives.h"

namespace kring {

namespace {

// Key file layout (all integers single bytes; version 1):
//   "KRINGKEY" version org_len org name_len name sign_sk[64] box_sk[32] transport_sk[32]
constexpr char kMagic[8] = {'K', 'R', 'I', 'N', 'G', 'K', 'E', 'Y'};
constexpr uint8_t kKeyFileVersion = 1;
constexpr size_t kMaxKeyFileBytes = 8 + 1 + 1 + 64 + 1 + 255 + kSignSecretKeyBytes + 2 * kBoxSecretKeyBytes;

// Wipes a byte buffer that held secrets when it goes out of scope.
struct WipedBuffer {
  Bytes bytes;
  ~WipedBuffer() { sodium_memzero(bytes.data(), bytes.size()); }
};

}  // namespace

bool IsValidOrgSlug(std::string_view org) {
  if (org.size() < 2 || org.size() > 64) return false;
  for (char c : org) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (size_t k = 1; k < n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;  // overlong, out of range, surrogate
    i += n;
  }
  return true;
}

bool IsPrintableText(std::string_view s) {
  if (!IsValidUtf8(s)) return false;
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) return false;
  return true;
}

bool IsValidDisplayName(std::string_view name) {
  if (name.empty() || name.size() > 128 || !IsValidUtf8(name)) return false;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return false;  // no control characters in logs and cards
  }
  return true;
}

NodeIdentity NodeIdentity::Generate(std::string org, std::string display_name) {
  InitSodium();
  NodeIdentity id;
  id.pub.org = std::move(org);
  id.pub.display_name = std::move(display_name);
  crypto_sign_keypair(id.pub.sign_pk.data(), id.sign_sk.data());
  crypto_box_keypair(id.pub.box_pk.data(), id.box_sk.data());
  crypto_box_keypair(id.pub.transport_pk.data(), id.transport_sk.data());
  return id;
}

Status WriteKeyFile(const std::string& path, const NodeIdentity& id) {
  if (!IsValidOrgSlug(id.pub.org)) return Status::InvalidArgument("invalid organisation slug");
  if (!IsValidDisplayName(id.pub.display_name)) return Status::InvalidArgument("invalid display name");
  WipedBuffer buf;
  Bytes& b = buf.bytes;
  b.reserve(kMaxKeyFileBytes);
  b.insert(b.end(), kMagic, kMagic + sizeof kMagic);
  b.push_back(kKeyFileVersion);
  b.push_back(static_cast<uint8_t>(id.pub.org.size()));
  b.insert(b.end(), id.pub.org.begin(), id.pub.org.end());
  b.push_back(static_cast<uint8_t>(id.pub.display_name.size()));
  b.insert(b.end(), id.pub.display_name.begin(), id.pub.display_name.end());
  b.insert(b.end(), id.sign_sk.data(), id.sign_sk.data() + id.sign_sk.size());
  b.insert(b.end(), id.box_sk.data(), id.box_sk.data() + id.box_sk.size());
  b.insert(b.end(), id.transport_sk.data(), id.transport_sk.data() + id.transport_sk.size());

  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return Status::AlreadyExists("key file " + path + " already exists");
    return Status::IOError("cannot create " + path + ": " + std::strerror(errno));
  }
  // The umask cannot widen 0600, but a pre-set ACL default could; be explicit.
  ::fchmod(fd, 0600);
  size_t off = 0;
  while (off < b.size()) {
    ssize_t n = ::write(fd, b.data() + off, b.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return Status::IOError("cannot write " + path + ": " + std::strerror(e));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return Status::IOError("cannot fsync " + path + ": " + std::strerror(e));
  }
  ::close(fd);
  // Make the new directory entry durable too.
  std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Result<NodeIdentity> ReadKeyFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("no key file at " + path + " (run 'kring-node init' first)");
    return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Status::IOError("cannot stat " + path);
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::PermissionDenied("key file " + path + " has mode " + mode +
                                    "; it must be readable by its owner only (chmod 600)");
  }
  if (st.st_uid != ::geteuid()) {
    ::close(fd);
    return Status::PermissionDenied("key file " + path + " is owned by another user");
  }
  WipedBuffer buf;
  buf.bytes.resize(kMaxKeyFileBytes + 1);
  size_t len = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.bytes.data() + len, buf.bytes.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return Status::IOError("cannot read " + path);
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
    if (len == buf.bytes.size()) break;
  }
  ::close(fd);
  const uint8_t* p = buf.bytes.data();
  const uint8_t* end = p + len;
  auto corrupt = [&](const char* why) { return Status::Corruption("key file " + path + ": " + why); };
  if (len > kMaxKeyFileBytes) return corrupt("too large");
  if (end - p < 10 || std::memcmp(p, kMagic, sizeof kMagic) != 0) return corrupt("not a kring key file");
  p += sizeof kMagic;
  if (*p++ != kKeyFileVersion) return corrupt("unsupported version");
  NodeIdentity id;
  size_t org_len = *p++;
  if (static_cast<size_t>(end - p) < org_len + 1) return corrupt("truncated");
  id.pub.org.assign(reinterpret_cast<const char*>(p), org_len);
  p += org_len;
  size_t name_len = *p++;
  if (static_cast<size_t>(end - p) != name_len + kSignSecretKeyBytes + 2 * kBoxSecretKeyBytes)
    return corrupt("truncated or trailing bytes");
  id.pub.display_name.assign(reinterpret_cast<const char*>(p), name_len);
  p += name_len;
  if (!IsValidOrgSlug(id.pub.org) || !IsValidDisplayName(id.pub.display_name)) return corrupt("bad organisation");
  std::memcpy(id.sign_sk.data(), p, kSignSecretKeyBytes);
  p += kSignSecretKeyBytes;
  // An Ed25519 secret key is seed || public key and the public key is read
  // from its second half: if that half does not follow from the seed, the node
  // would advertise a key its own signatures do not verify under.
  {
    SignPublicKey derived;
    SignSecretKey check;
    crypto_sign_seed_keypair(derived.data(), check.data(), id.sign_sk.data());
    if (sodium_memcmp(derived.data(), id.sign_sk.data() + kSignSecretKeyBytes - kSignPublicKeyBytes,
                      kSignPublicKeyBytes) != 0)
      return corrupt("signing key does not match its public key");
  }
  std::memcpy(id.box_sk.data(), p, kBoxSecretKeyBytes);
  p += kBoxSecretKeyBytes;
  std::memcpy(id.transport_sk.data(), p, kBoxSecretKeyBytes);
  id.pub.sign_pk = SignPublicFromSecret(id.sign_sk);
  id.pub.box_pk = BoxPublicFromSecret(id.box_sk);
  id.pub.transport_pk = BoxPublicFromSecret(id.transport_sk);
  return id;
}

}  // namespace kring
