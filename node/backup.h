// Backing up a node's database while it runs, optionally encrypted, and restoring it so that the node knows it was restored.
//
// A backup is one SQLite file taken with the online backup API (one
// consistent snapshot; the node keeps writing meanwhile), carrying when it
// was taken, whose it is and how long the access log was. With a passphrase
// it is sealed: Argon2id (crypto_pwhash) derives the key, and
// crypto_secretstream_xchacha20poly1305 encrypts it in chunks; the file
// format is in docs/operations.md ("Backup file format").
//
// A restore cannot bring back what happened after the backup. It says so:
// it revokes every API token (a revocation made after the backup must not
// come back to life), records a restore entry in the access log and a
// RestoreMarker (node/checkpoint.h), signs a checkpoint that counts the
// restore, and makes the node recheck every case when it starts. Partners
// re-send, by reconciliation, the records they hold that it lacks.
#pragma once

#include <string>

#include "crypto/status.h"

namespace kring {

// The first bytes of an encrypted backup; a plain one starts "SQLite format 3".
inline constexpr char kBackupMagic[8] = {'K', 'R', 'I', 'N', 'G', 'B', 'A', 'K'};
inline constexpr uint8_t kBackupVersion = 1;
inline constexpr size_t kBackupSaltBytes = 16;        // crypto_pwhash_SALTBYTES
inline constexpr size_t kBackupChunkBytes = 64 * 1024; // plaintext per secretstream message
// magic, version, opslimit u64, memlimit u64, salt, secretstream header (24).
inline constexpr size_t kBackupHeaderBytes = 8 + 1 + 8 + 8 + kBackupSaltBytes + 24;

struct BackupSummary {
  int64_t time_ms = 0;       // when the snapshot was taken
  int64_t entries = 0;       // access-log entries in it
  int64_t bytes = 0;         // size of the file written
  bool encrypted = false;
};

// Writes a backup of DIR's database to `out` (which must not exist; created
// 0600). `passphrase` empty: a plain SQLite file. IOError with the reason.
Result<BackupSummary> BackupNode(const std::string& data_dir, const std::string& out, const std::string& passphrase,
                                 int64_t now_ms);

struct RestoreSummary {
  int64_t backup_time_ms = 0;
  int64_t backup_entries = 0;
  int64_t tokens_revoked = 0;
  bool backup_time_known = true;  // false for a raw sqlite3 copy: the last entry's time stands in
  int64_t checkpoints_carried = 0;  // own checkpoints kept from the replaced database (signed after the backup)
  uint32_t restores = 0;            // restores this log has been through, this one included
};

// Replaces DIR's database with the backup in `from`, then declares the
// restore (see above). When the database it replaces still opens, the
// checkpoints it signed and the restores it counted are carried over, so
// that audit verify names the checkpoints the restored chain falls short of
// and a second restore from an old backup still counts as another restore. DIR must hold the node's key file (restore it first:
// the key is never in a backup). Conflict if a process has the database open
// (the node is running); InvalidArgument for a backup of another
// organisation, an encrypted backup without a passphrase; Unauthenticated
// for a wrong passphrase or a damaged encrypted file. Nothing in DIR
// changes unless it succeeds.
Result<RestoreSummary> RestoreNode(const std::string& from, const std::string& data_dir, const std::string& passphrase,
                                   int64_t now_ms);

// Conflict when another connection has the database at `db_path` open
// (a running node holds a shared lock on it from its first read).
Status CheckDatabaseUnused(const std::string& db_path);

// Reads a passphrase file: the first line, without its newline. InvalidArgument when empty.
Result<std::string> ReadPassphraseFile(const std::string& path);

}  // namespace kring
