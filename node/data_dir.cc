// Owner-only checks and the run lock of a node's data directory.
#include "node/data_dir.h"

#include <cerrno>
#include <fstream>
#include <iostream>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kring {

Result<std::string> ReadOperatorFile(const std::string& path, size_t max) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) return Status::NotFound("cannot read " + path);
    in = &file;
  }
  std::string text(max + 1, '\0');
  in->read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in->gcount()));
  if (text.size() > max)
    return Status::InvalidArgument((path == "-" ? std::string("standard input") : path) + " is larger than " +
                                   std::to_string(max) + " bytes");
  return text;
}

std::string LockFilePath(const std::string& data_dir) { return data_dir + "/lock"; }

namespace {

std::string ModeString(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

Status CheckDataDirPrivate(const std::string& data_dir) {
  struct stat st {};
  if (::stat(data_dir.c_str(), &st) != 0)
    return Status::NotFound("cannot read data directory " + data_dir + ": " + std::strerror(errno));
  if ((st.st_mode & 077) != 0)
    return Status::PermissionDenied("data directory " + data_dir + " has mode " + ModeString(st.st_mode) +
                                    "; it must be accessible by its owner only; run: chmod 700 " + data_dir);
  const std::string db = data_dir + "/kring.db";
  for (const std::string& f : {db, db + "-wal", db + "-shm"}) {
    if (::stat(f.c_str(), &st) != 0) continue;  // -wal and -shm exist only while a connection is open
    if ((st.st_mode & 077) != 0)
      return Status::PermissionDenied("database file " + f + " has mode " + ModeString(st.st_mode) +
                                      "; it must be readable by its owner only; run: chmod 600 " + f);
  }
  return Status::Ok();
}

Result<DataDirLock> DataDirLock::Acquire(const std::string& data_dir) {
  const std::string path = LockFilePath(data_dir);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot open lock file " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) return Status::IOError("cannot lock " + path + ": " + std::strerror(err));
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?");
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return Status::Conflict("another kring-node (pid " + pid + ") is running on " + data_dir +
                            "; two processes must not run one node: stop it first");
  }
  // Ours now: say who holds it.
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    ::close(fd);
    return Status::IOError("cannot write lock file " + path + ": " + std::strerror(errno));
  }
  return DataDirLock(fd);
}

DataDirLock::~DataDirLock() {
  // The pid stays in the file; only the flock says whether it is held.
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace kring
