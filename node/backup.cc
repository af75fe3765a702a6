// Online backups of a node's database (plain or sealed with a passphrase) and restores that declare themselves.
#include "node/backup.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "crypto/primitives.h"
#include "node/checkpoint.h"
#include "node/node.h"
#include "protocol/hlc.h"

namespace kring {

static_assert(kBackupSaltBytes == crypto_pwhash_SALTBYTES);
static_assert(kBackupHeaderBytes == 8 + 1 + 8 + 8 + crypto_pwhash_SALTBYTES + crypto_secretstream_xchacha20poly1305_HEADERBYTES);
static_assert(crypto_secretstream_xchacha20poly1305_KEYBYTES == 32);

namespace {

constexpr char kSqliteMagic[16] = {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};
constexpr const char* kBackupStateKey = "backup";  // node_state in the copy: {time_ms, entries, org}
// Argon2id cost: libsodium's "moderate" (about 1 s and 256 MiB); a file may
// name more, up to "sensitive", but never more than that (a crafted file
// must not make restore allocate without bound).
constexpr unsigned long long kOpsLimit = crypto_pwhash_OPSLIMIT_MODERATE;
constexpr size_t kMemLimit = crypto_pwhash_MEMLIMIT_MODERATE;

// A file descriptor that closes itself.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// A temporary file in `dir` (0700 for a data directory) removed on destruction unless kept.
struct TempPath {
  std::string path;
  explicit TempPath(const std::string& dir, const char* what) {
    uint8_t r[8];
    randombytes_buf(r, sizeof r);
    path = dir + "/." + what + "-" + ToHex(ByteSpan(r, sizeof r)) + ".tmp";
  }
  ~TempPath() {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((path + suffix).c_str());
  }
};

Status WriteAll(int fd, const uint8_t* p, size_t n, const std::string& name) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::IOError("cannot write " + name + ": " + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// Reads up to n bytes; fewer only at end of file.
Result<size_t> ReadUpTo(int fd, uint8_t* p, size_t n, const std::string& name) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::IOError("cannot read " + name + ": " + std::strerror(errno));
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// A key derived from a passphrase, wiped on destruction.
struct StreamKey {
  uint8_t k[crypto_secretstream_xchacha20poly1305_KEYBYTES];
  ~StreamKey() { sodium_memzero(k, sizeof k); }
};

Status DeriveKey(const std::string& passphrase, const uint8_t* salt, unsigned long long ops, size_t mem, StreamKey* key) {
  if (crypto_pwhash(key->k, sizeof key->k, passphrase.data(), passphrase.size(), salt, ops, mem,
                    crypto_pwhash_ALG_ARGON2ID13) != 0)
    return Status::ResourceExhausted("not enough memory to derive the backup key (Argon2id needs " +
                                     std::to_string(mem >> 20) + " MiB)");
  return Status::Ok();
}

// Seals the file `plain` into `out` (created 0600, must not exist).
Status Seal(const std::string& plain, const std::string& out, const std::string& passphrase) {
  Fd in(::open(plain.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) return Status::IOError("cannot read " + plain + ": " + std::strerror(errno));
  Fd o(::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (o.fd < 0) return Status::IOError("cannot create " + out + ": " + std::strerror(errno));
  uint8_t header[kBackupHeaderBytes];
  std::memcpy(header, kBackupMagic, 8);
  header[8] = kBackupVersion;
  PutU64(header + 9, kOpsLimit);
  PutU64(header + 17, kMemLimit);
  uint8_t* salt = header + 25;
  randombytes_buf(salt, kBackupSaltBytes);
  StreamKey key;
  KRING_RETURN_IF_ERROR(DeriveKey(passphrase, salt, kOpsLimit, kMemLimit, &key));
  crypto_secretstream_xchacha20poly1305_state st;
  crypto_secretstream_xchacha20poly1305_init_push(&st, header + 25 + kBackupSaltBytes, key.k);
  KRING_RETURN_IF_ERROR(WriteAll(o.fd, header, sizeof header, out));
  std::vector<uint8_t> buf(kBackupChunkBytes), sealed(kBackupChunkBytes + crypto_secretstream_xchacha20poly1305_ABYTES);
  Status result = Status::Ok();
  bool first = true;
  for (;;) {
    auto n = ReadUpTo(in.fd, buf.data(), buf.size(), plain);
    if (!n.ok()) {
      result = n.status();
      break;
    }
    // A short read is the end: the last message carries TAG_FINAL, so a
    // truncated file is detected on restore.
    const bool last = *n < buf.size();
    unsigned long long clen = 0;
    crypto_secretstream_xchacha20poly1305_push(&st, sealed.data(), &clen, buf.data(), *n, first ? header : nullptr,
                                               first ? sizeof header : 0,
                                               last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
    first = false;
    uint8_t len[4] = {static_cast<uint8_t>(clen), static_cast<uint8_t>(clen >> 8), static_cast<uint8_t>(clen >> 16),
                      static_cast<uint8_t>(clen >> 24)};
    result = WriteAll(o.fd, len, 4, out);
    if (result.ok()) result = WriteAll(o.fd, sealed.data(), clen, out);
    if (!result.ok() || last) break;
  }
  sodium_memzero(buf.data(), buf.size());
  sodium_memzero(&st, sizeof st);
  if (result.ok() && ::fsync(o.fd) != 0) result = Status::IOError("cannot sync " + out + ": " + std::strerror(errno));
  if (!result.ok()) ::unlink(out.c_str());
  return result;
}

// Opens the sealed file `in` into `plain` (created 0600).
Status Unseal(int in, const std::string& from, const std::string& plain, const std::string& passphrase) {
  uint8_t header[kBackupHeaderBytes];
  auto n = ReadUpTo(in, header, sizeof header, from);
  if (!n.ok()) return n.status();
  if (*n != sizeof header) return Status::Corruption(from + " is truncated (no complete header)");
  if (header[8] != kBackupVersion) return Status::Corruption(from + ": unknown backup format version");
  const uint64_t ops = GetU64(header + 9), mem = GetU64(header + 17);
  if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_SENSITIVE || mem < crypto_pwhash_MEMLIMIT_MIN ||
      mem > crypto_pwhash_MEMLIMIT_SENSITIVE)
    return Status::Corruption(from + ": key derivation cost out of range");
  StreamKey key;
  KRING_RETURN_IF_ERROR(DeriveKey(passphrase, header + 25, ops, static_cast<size_t>(mem), &key));
  crypto_secretstream_xchacha20poly1305_state st;
  if (crypto_secretstream_xchacha20poly1305_init_pull(&st, header + 25 + kBackupSaltBytes, key.k) != 0)
    return Status::Corruption(from + ": malformed stream header");
  Fd o(::open(plain.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (o.fd < 0) return Status::IOError("cannot create " + plain + ": " + std::strerror(errno));
  std::vector<uint8_t> sealed(kBackupChunkBytes + crypto_secretstream_xchacha20poly1305_ABYTES), buf(kBackupChunkBytes);
  Status result = Status::Ok();
  bool first = true, final = false;
  while (result.ok() && !final) {
    uint8_t len[4];
    auto got = ReadUpTo(in, len, 4, from);
    if (!got.ok()) return got.status();
    if (*got != 4) {
      result = Status::Corruption(from + " is truncated (the last part is missing)");
      break;
    }
    const size_t clen = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<size_t>(len[3]) << 24);
    if (clen < crypto_secretstream_xchacha20poly1305_ABYTES || clen > sealed.size()) {
      result = Status::Corruption(from + ": a part has an impossible length");
      break;
    }
    got = ReadUpTo(in, sealed.data(), clen, from);
    if (!got.ok()) return got.status();
    if (*got != clen) {
      result = Status::Corruption(from + " is truncated");
      break;
    }
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&st, buf.data(), &mlen, &tag, sealed.data(), clen,
                                                   first ? header : nullptr, first ? sizeof header : 0) != 0) {
      result = first ? Status::Unauthenticated("wrong passphrase, or " + from + " is damaged")
                     : Status::Corruption(from + " is damaged (a part does not authenticate)");
      break;
    }
    first = false;
    final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    result = WriteAll(o.fd, buf.data(), mlen, plain);
  }
  if (result.ok()) {
    uint8_t extra;
    auto more = ReadUpTo(in, &extra, 1, from);
    if (!more.ok()) result = more.status();
    else if (*more != 0) result = Status::Corruption(from + " has bytes after its end");
  }
  sodium_memzero(buf.data(), buf.size());
  sodium_memzero(&st, sizeof st);
  if (result.ok() && ::fsync(o.fd) != 0) result = Status::IOError("cannot sync " + plain + ": " + std::strerror(errno));
  return result;
}

// Runs `sql` on a raw connection; IOError with SQLite's message.
Status ExecRaw(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return Status::IOError("sqlite: " + msg);
  }
  return Status::Ok();
}

// Writes what the copy at `path` is (time, org, access-log length) into its node_state.
Result<int64_t> MarkBackup(const std::string& path, const std::string& org, int64_t now_ms) {
  sqlite3* db = nullptr;
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> guard(nullptr, sqlite3_close_v2);
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(db);
    return Status::IOError("cannot open the backup copy");
  }
  guard.reset(db);
  sqlite3_stmt* st = nullptr;
  int64_t entries = 0;
  if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(seq), 0) FROM access_log", -1, &st, nullptr) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return Status::IOError(std::string("cannot read the backup's access log: ") + sqlite3_errmsg(db));
  }
  entries = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  const std::string marker = nlohmann::json{{"time_ms", now_ms}, {"entries", entries}, {"org", org}}.dump();
  if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO node_state (key, value) VALUES (?, ?)", -1, &st, nullptr) != SQLITE_OK)
    return Status::IOError(std::string("cannot mark the backup: ") + sqlite3_errmsg(db));
  sqlite3_bind_text(st, 1, kBackupStateKey, -1, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, marker.data(), static_cast<int>(marker.size()), SQLITE_TRANSIENT);
  const int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Status::IOError(std::string("cannot mark the backup: ") + sqlite3_errmsg(db));
  return entries;
}

bool StartsWith(int fd, const char* magic, size_t n) {
  std::vector<uint8_t> b(n);
  auto got = ReadUpTo(fd, b.data(), n, "");
  ::lseek(fd, 0, SEEK_SET);
  return got.ok() && *got == n && std::memcmp(b.data(), magic, n) == 0;
}

Status SyncDir(const std::string& dir) {
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.fd < 0 || ::fsync(d.fd) != 0) return Status::IOError("cannot sync " + dir + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

Result<std::string> ReadPassphraseFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read passphrase file " + path);
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) return Status::InvalidArgument("passphrase file " + path + " is empty");
  return line;
}

Status CheckDatabaseUnused(const std::string& db_path) {
  struct stat sb {};
  if (::stat(db_path.c_str(), &sb) != 0) return Status::Ok();  // no database: nothing runs on it
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(db);
    return Status::IOError("cannot open " + db_path);
  }
  // In WAL mode every connection that has read the database holds a shared
  // lock on it until it closes: an exclusive lock is free only when no one
  // (no running node) has it open.
  Status st = ExecRaw(db, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; ROLLBACK;");
  sqlite3_close_v2(db);
  if (!st.ok())
    return Status::Conflict(db_path + " is in use (is the node running?); stop it first");
  return Status::Ok();
}

Result<BackupSummary> BackupNode(const std::string& data_dir, const std::string& out, const std::string& passphrase,
                                 int64_t now_ms) {
  auto id = ReadKeyFile(KeyFilePath(data_dir));  // also catches a wrong --data
  if (!id.ok()) return id.status();
  struct stat sb {};
  if (::stat(out.c_str(), &sb) == 0) return Status::AlreadyExists(out + " exists; refusing to overwrite it");
  auto store = Store::Open(DatabasePath(data_dir));
  if (!store.ok()) return store.status();
  BackupSummary summary;
  summary.time_ms = now_ms;
  summary.encrypted = !passphrase.empty();
  // The plain copy of an encrypted backup lives only in the data directory (0700), never beside the output.
  TempPath tmp(data_dir, "backup");
  const std::string& plain = passphrase.empty() ? out : tmp.path;
  KRING_RETURN_IF_ERROR((*store)->BackupTo(plain));
  auto entries = MarkBackup(plain, id->pub.org, now_ms);
  if (!entries.ok()) {
    ::unlink(plain.c_str());
    return entries.status();
  }
  summary.entries = *entries;
  if (!passphrase.empty()) KRING_RETURN_IF_ERROR(Seal(plain, out, passphrase));
  if (::stat(out.c_str(), &sb) != 0) return Status::IOError("cannot stat " + out);
  summary.bytes = sb.st_size;
  return summary;
}

Result<RestoreSummary> RestoreNode(const std::string& from, const std::string& data_dir, const std::string& passphrase,
                                   int64_t now_ms) {
  auto id = ReadKeyFile(KeyFilePath(data_dir));
  if (!id.ok())
    return Status::NotFound("restore needs the node's key file in " + data_dir + " (restore node.key first): " +
                            id.status().message());
  const std::string db_path = DatabasePath(data_dir);
  KRING_RETURN_IF_ERROR(CheckDatabaseUnused(db_path));

  // What the database being replaced knows and the backup may not: the
  // checkpoints signed after the backup, restores made since. Best effort:
  // a database too damaged to open is what restores are for.
  std::vector<CheckpointRow> old_checkpoints;
  std::vector<RestoreMarker> old_markers;
  {
    struct stat sb {};
    if (::stat(db_path.c_str(), &sb) == 0) {
      auto old = Store::Open(db_path);
      if (old.ok()) {
        auto own = (*old)->OwnCheckpoints();
        auto markers = RestoreMarkers(**old);
        if (own.ok()) old_checkpoints = std::move(*own);
        if (markers.ok()) old_markers = std::move(*markers);
      }
    }
  }

  Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) return Status::NotFound("cannot read " + from + ": " + std::strerror(errno));
  TempPath tmp(data_dir, "restore");
  if (StartsWith(in.fd, kBackupMagic, sizeof kBackupMagic)) {
    if (passphrase.empty()) return Status::InvalidArgument(from + " is encrypted: give --passphrase-file");
    KRING_RETURN_IF_ERROR(Unseal(in.fd, from, tmp.path, passphrase));
  } else if (StartsWith(in.fd, kSqliteMagic, sizeof kSqliteMagic)) {
    Fd o(::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (o.fd < 0) return Status::IOError("cannot create " + tmp.path + ": " + std::strerror(errno));
    std::vector<uint8_t> buf(kBackupChunkBytes);
    for (;;) {
      auto n = ReadUpTo(in.fd, buf.data(), buf.size(), from);
      if (!n.ok()) return n.status();
      KRING_RETURN_IF_ERROR(WriteAll(o.fd, buf.data(), *n, tmp.path));
      if (*n < buf.size()) break;
    }
    if (::fsync(o.fd) != 0) return Status::IOError("cannot sync " + tmp.path + ": " + std::strerror(errno));
  } else {
    return Status::InvalidArgument(from + " is neither a kring-node backup nor an SQLite database");
  }

  RestoreSummary summary;
  {
    auto store = Store::Open(tmp.path);  // migrates a backup made by an older kring-node
    if (!store.ok()) return Status::Corruption(from + " does not open as a node database: " + store.status().message());
    Store& s = **store;
    auto marker = s.GetNodeState(kBackupStateKey);
    if (!marker.ok()) return marker.status();
    auto head = s.AccessLogHead();
    if (!head.ok()) return head.status();
    summary.backup_entries = head->entries;
    if (marker->has_value()) {
      nlohmann::json m = nlohmann::json::parse((*marker)->begin(), (*marker)->end(), nullptr, false);
      if (!m.is_object() || !m.contains("time_ms") || !m["time_ms"].is_number_integer() || !m.contains("org") ||
          !m["org"].is_string())
        return Status::Corruption(from + " carries a malformed backup marker");
      if (m["org"].get<std::string>() != id->pub.org)
        return Status::InvalidArgument(from + " is a backup of " + m["org"].get<std::string>() + ", not of " + id->pub.org);
      summary.backup_time_ms = m["time_ms"].get<int64_t>();
    } else {
      // A raw `sqlite3 .backup` copy: its time is unknown; the last entry's stands in.
      summary.backup_time_known = false;
      summary.backup_time_ms = head->last_time_ms;
    }

    auto revoked = s.RevokeAllTokens(now_ms);
    if (!revoked.ok()) return revoked.status();
    summary.tokens_revoked = *revoked;
    auto markers = RestoreMarkers(s);
    if (!markers.ok()) return markers.status();
    // The replaced database's restores include the backup's (it is the same
    // log, later), unless it was replaced by hand meanwhile.
    if (old_markers.size() > markers->size()) *markers = old_markers;
    markers->push_back({summary.backup_time_ms, summary.backup_entries, now_ms});
    summary.restores = static_cast<uint32_t>(markers->size());
    KRING_RETURN_IF_ERROR(SetRestoreMarkers(s, *markers));
    auto carried = s.ImportOwnCheckpoints(old_checkpoints);
    if (!carried.ok()) return carried.status();
    summary.checkpoints_carried = *carried;
    AccessEntry e;
    randombytes_buf(e.event_id.data(), e.event_id.size());
    e.time_ms = now_ms;
    e.action = "restore";
    e.outcome = "success";
    e.actor_id = "kring-node";
    e.actor_name = "kring-node (automatic)";
    e.actor_role = "system";
    e.organisation = id->pub.org;
    e.client_system = "kring-node restore";
    e.items = {"backup-time-ms:" + std::to_string(summary.backup_time_ms),
               "entries-kept:" + std::to_string(summary.backup_entries),
               "entries-after-backup-missing-since-ms:" + std::to_string(summary.backup_time_ms),
               "tokens-revoked:" + std::to_string(summary.tokens_revoked)};
    KRING_RETURN_IF_ERROR(s.AppendAccess(&e));
    // A one-byte digest never matches a real one: the node rechecks every
    // case (re-sealing, re-announcing) when it starts.
    const uint8_t never[1] = {0};
    KRING_RETURN_IF_ERROR(s.SetNodeState("partners_digest", ByteSpan(never, 1)));
    auto max_hlc = s.MaxHlc();
    if (!max_hlc.ok()) return max_hlc.status();
    HybridClock clock([now_ms] { return static_cast<uint64_t>(now_ms); });
    clock.SetFloor(*max_hlc);
    auto cp = WriteCheckpoint(s, *id, clock.Now(), now_ms);
    if (!cp.ok()) return cp.status();
  }  // closed: its WAL is merged into the file

  KRING_RETURN_IF_ERROR(CheckDatabaseUnused(db_path));  // still nobody on it
  // The old WAL belongs to the old database: it must not be replayed onto the restored one.
  for (const char* suffix : {"-wal", "-shm"}) {
    const std::string p = db_path + suffix;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return Status::IOError("cannot remove " + p + ": " + std::strerror(errno));
  }
  if (::rename(tmp.path.c_str(), db_path.c_str()) != 0)
    return Status::IOError("cannot move the restored database into place: " + std::string(std::strerror(errno)));
  KRING_RETURN_IF_ERROR(SyncDir(data_dir));
  return summary;
}

}  // namespace kring
