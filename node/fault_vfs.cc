// The fault-injecting SQLite VFS for the store's tests: a thin shim over the default VFS.
#include "node/fault_vfs.h"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include <sqlite3.h>

namespace kring {

namespace {

std::atomic<DiskFault> g_fault{DiskFault::kNone};
std::atomic<uint64_t> g_injected{0};
std::mutex g_hang_mu;  // kSyncHang: guards g_hanging; g_hang_cv wakes at a fault change
std::condition_variable g_hang_cv;
int g_hanging = 0;
sqlite3_vfs* g_base = nullptr;  // the default VFS we wrap
sqlite3_vfs g_vfs;

// Our file: the base VFS's file follows it in the same allocation (szOsFile).
struct FaultFile {
  sqlite3_file base;  // pMethods points at kMethods
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real(); }

int Injected(int rc) {
  g_injected.fetch_add(1);
  return rc;
}

int Close(sqlite3_file* f) {
  sqlite3_file* r = Real(f);
  return r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
}
int Read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) { return Real(f)->pMethods->xRead(Real(f), p, n, off); }
int Write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  switch (g_fault.load()) {
    case DiskFault::kWriteError: return Injected(SQLITE_IOERR_WRITE);
    case DiskFault::kDiskFull: return Injected(SQLITE_FULL);
    default: return Real(f)->pMethods->xWrite(Real(f), p, n, off);
  }
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  switch (g_fault.load()) {
    case DiskFault::kWriteError: return Injected(SQLITE_IOERR_TRUNCATE);
    case DiskFault::kDiskFull: return Injected(SQLITE_FULL);
    default: return Real(f)->pMethods->xTruncate(Real(f), size);
  }
}
int Sync(sqlite3_file* f, int flags) {
  if (g_fault.load() == DiskFault::kSyncError) return Injected(SQLITE_IOERR_FSYNC);
  if (g_fault.load() == DiskFault::kSyncHang) {
    std::unique_lock lock(g_hang_mu);
    ++g_hanging;
    g_hang_cv.notify_all();
    g_hang_cv.wait(lock, [] { return g_fault.load() != DiskFault::kSyncHang; });
    --g_hanging;
  }
  return Real(f)->pMethods->xSync(Real(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* size) { return Real(f)->pMethods->xFileSize(Real(f), size); }
int Lock(sqlite3_file* f, int l) { return Real(f)->pMethods->xLock(Real(f), l); }
int Unlock(sqlite3_file* f, int l) { return Real(f)->pMethods->xUnlock(Real(f), l); }
int CheckReservedLock(sqlite3_file* f, int* out) { return Real(f)->pMethods->xCheckReservedLock(Real(f), out); }
int FileControl(sqlite3_file* f, int op, void* arg) { return Real(f)->pMethods->xFileControl(Real(f), op, arg); }
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) { return Real(f)->pMethods->xDeviceCharacteristics(Real(f)); }
// The WAL index (shared memory) is not a disk write: no faults here.
int ShmMap(sqlite3_file* f, int pg, int sz, int extend, void volatile** p) {
  return Real(f)->pMethods->xShmMap(Real(f), pg, sz, extend, p);
}
int ShmLock(sqlite3_file* f, int off, int n, int flags) { return Real(f)->pMethods->xShmLock(Real(f), off, n, flags); }
void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }
// No memory-mapped reads: every page goes through Read (and a fault in Write is not bypassed).
int Fetch(sqlite3_file*, sqlite3_int64, int, void** pp) {
  *pp = nullptr;
  return SQLITE_OK;
}
int Unfetch(sqlite3_file*, sqlite3_int64, void*) { return SQLITE_OK; }

const sqlite3_io_methods kMethods = {3,          Close,     Read,        Write,    Truncate,
                                     Sync,       FileSize,  Lock,        Unlock,   CheckReservedLock,
                                     FileControl, SectorSize, DeviceCharacteristics, ShmMap, ShmLock,
                                     ShmBarrier, ShmUnmap,  Fetch,       Unfetch};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  ff->base.pMethods = nullptr;
  int rc = g_base->xOpen(g_base, name, ff->real(), flags, out_flags);
  // The real file's methods stay set only when it opened; ours follow them.
  if (ff->real()->pMethods != nullptr) ff->base.pMethods = &kMethods;
  return rc;
}

int Delete(sqlite3_vfs*, const char* name, int sync_dir) { return g_base->xDelete(g_base, name, sync_dir); }
int Access(sqlite3_vfs*, const char* name, int flags, int* out) { return g_base->xAccess(g_base, name, flags, out); }
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) { return g_base->xFullPathname(g_base, name, n, out); }
void* DlOpen(sqlite3_vfs*, const char* name) { return g_base->xDlOpen(g_base, name); }
void DlError(sqlite3_vfs*, int n, char* msg) { g_base->xDlError(g_base, n, msg); }
void (*DlSym(sqlite3_vfs*, void* h, const char* sym))(void) { return g_base->xDlSym(g_base, h, sym); }
void DlClose(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int Randomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int Sleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int CurrentTime(sqlite3_vfs*, double* t) { return g_base->xCurrentTime(g_base, t); }
int GetLastError(sqlite3_vfs*, int n, char* msg) { return g_base->xGetLastError ? g_base->xGetLastError(g_base, n, msg) : 0; }
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* t) { return g_base->xCurrentTimeInt64(g_base, t); }

}  // namespace

Status RegisterFaultVfs() {
  static std::once_flag once;
  static int rc = SQLITE_OK;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    if (g_base == nullptr || g_base->iVersion < 2) {
      rc = SQLITE_ERROR;
      return;
    }
    std::memset(&g_vfs, 0, sizeof g_vfs);
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_base->szOsFile;
    g_vfs.mxPathname = g_base->mxPathname;
    g_vfs.zName = kFaultVfsName;
    g_vfs.xOpen = Open;
    g_vfs.xDelete = Delete;
    g_vfs.xAccess = Access;
    g_vfs.xFullPathname = FullPathname;
    g_vfs.xDlOpen = DlOpen;
    g_vfs.xDlError = DlError;
    g_vfs.xDlSym = DlSym;
    g_vfs.xDlClose = DlClose;
    g_vfs.xRandomness = Randomness;
    g_vfs.xSleep = Sleep;
    g_vfs.xCurrentTime = CurrentTime;
    g_vfs.xGetLastError = GetLastError;
    g_vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    rc = sqlite3_vfs_register(&g_vfs, 0);
  });
  if (rc != SQLITE_OK) return Status::IOError("cannot register the fault-injecting SQLite VFS");
  return Status::Ok();
}

void SetDiskFault(DiskFault fault) {
  {
    std::lock_guard lock(g_hang_mu);
    g_fault.store(fault);
  }
  g_hang_cv.notify_all();
}

int HangingSyncs() {
  std::lock_guard lock(g_hang_mu);
  return g_hanging;
}

uint64_t TakeInjectedFaults() { return g_injected.exchange(0); }

}  // namespace kring
