// A node's data directory on its host: owner-only modes, and the lock that lets one process at a time run the node.
//
// The directory holds the key file (node.key), the database (kring.db and
// SQLite's -wal and -shm beside it) and `lock`. Everything in it is the
// organisation's: the directory is 0700 and the files 0600 from `init` on,
// and `run` refuses to start when group or others may read any of them.
#pragma once

#include <string>

#include "crypto/status.h"

namespace kring {

std::string LockFilePath(const std::string& data_dir);

// A file an operator names on the command line (a card, a roster), or
// standard input for "-": at most `max` bytes are read. NotFound when it
// cannot be opened; InvalidArgument naming it when it is larger than `max`.
Result<std::string> ReadOperatorFile(const std::string& path, size_t max);

// Ok when neither group nor others have any permission on the directory,
// the database or its -wal and -shm files (those that exist).
// PermissionDenied naming the file and the command that fixes it, e.g.
// "data directory /var/lib/kring has mode 0755; run: chmod 700 /var/lib/kring".
Status CheckDataDirPrivate(const std::string& data_dir);

// An exclusive lock on DIR/lock (flock), held until destroyed or the
// process ends: a second `kring-node run` on the same directory would
// connect under the same identity and write the same database. The lock
// file holds the holder's pid, for the message the second one prints.
class DataDirLock {
 public:
  // Takes the lock without waiting. Conflict naming the holder's pid when
  // another process holds it; IOError when the lock file cannot be opened.
  static Result<DataDirLock> Acquire(const std::string& data_dir);
  DataDirLock(DataDirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DataDirLock& operator=(DataDirLock&&) = delete;
  DataDirLock(const DataDirLock&) = delete;
  ~DataDirLock();

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace kring
