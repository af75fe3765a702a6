// A SQLite VFS over the default one whose writes, syncs and truncates can be made to fail: the store's disk error paths, tested in one process.
//
// Like leveldb's ErrorEnv: tests open a Store with vfs = kFaultVfsName and
// switch faults on and off; everything else goes to the platform's default
// VFS ("unix"). Faults apply to every file opened through this VFS (the
// database, its WAL and journals).
//
// Thread-safety: the fault switch is atomic; set it between calls to the store.
#pragma once

#include <cstdint>

#include "crypto/status.h"

namespace kring {

inline constexpr const char* kFaultVfsName = "kring-fault";

enum class DiskFault {
  kNone,
  kWriteError,  // xWrite and xTruncate fail with SQLITE_IOERR_WRITE / _TRUNCATE
  kDiskFull,    // xWrite and xTruncate fail with SQLITE_FULL
  kSyncError,   // xSync fails with SQLITE_IOERR_FSYNC
  kSyncHang,    // xSync waits until SetDiskFault(kNone): a commit stuck in its fsync
};

// Registers the VFS (not as the default). Idempotent; IOError if SQLite refuses.
Status RegisterFaultVfs();
// Injects `fault` from the next operation on, until SetDiskFault(kNone).
void SetDiskFault(DiskFault fault);
// How many xSync calls are waiting in kSyncHang now.
int HangingSyncs();
// How many operations failed on purpose since the last call.
uint64_t TakeInjectedFaults();

}  // namespace kring
