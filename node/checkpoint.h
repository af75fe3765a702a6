// Signed access-log checkpoints at a node: signing them, keeping partners', and checking the log against them.
//
// The hash chain of node/access_log.h is unkeyed: whoever can write the
// database can drop its triggers, delete an entry and recompute every hash.
// A checkpoint (protocol/checkpoint.h) is the node's signed statement of the
// log's length and head at a moment; the node keeps every one it signed and
// partners keep its latest. A log rewritten or truncated after a checkpoint
// no longer matches it, and AuditAccessLog names that checkpoint.
//
// A restore (node/backup.h) is declared, not hidden: it leaves a
// RestoreMarker and bumps `restores` in later checkpoints, so the gap it
// leaves is reported as a gap rather than as tampering or as "intact".
#pragma once

#include "consent/reject.h"

#include <string>
#include <vector>

#include "crypto/identity.h"
#include "crypto/status.h"
#include "node/store.h"
#include "protocol/checkpoint.h"

namespace kring {

// When a running node signs a checkpoint: after `every_entries` new entries,
// or `interval_ms` after the last one when the log grew since; and at a
// clean stop when it grew.
struct CheckpointPolicy {
  int64_t every_entries = 1000;
  int64_t interval_ms = 60'000;
};

// A restore of this node's database from a backup (kept in node_state).
struct RestoreMarker {
  int64_t backup_time_ms = 0;  // when the backup was taken
  int64_t backup_entries = 0;  // the access log's length in the backup
  int64_t restored_ms = 0;     // when it was restored
};
Result<std::vector<RestoreMarker>> RestoreMarkers(Store& store);
Status SetRestoreMarkers(Store& store, const std::vector<RestoreMarker>& markers);
Status AddRestoreMarker(Store& store, const RestoreMarker& m);

// Signs a checkpoint of the log as it is now, stores it among this node's
// own and makes it the one partners are sent (audience: this node and every
// current partner). `hlc` must come from the node's clock.
Result<Checkpoint> WriteCheckpoint(Store& store, const NodeIdentity& me, HlcTimestamp hlc, int64_t now_ms);

// Decodes and verifies a checkpoint of `me` (own, held by a partner, or a
// file a partner exported) for AuditAccessLog.
struct CheckpointSource {
  Checkpoint checkpoint;
  std::string from;  // "this node", "held by wijkteam-a", "file cp.json": for the report
};

struct CheckpointAudit {
  enum class Verdict {
    kIntact,  // chain intact and matching every checkpoint
    kGap,     // chain intact, but a declared restore lost entries (named)
    kBroken,  // chain broken, or rewritten or truncated since a checkpoint (named)
  };
  Verdict verdict = Verdict::kIntact;
  AuditReport chain;
  int64_t checkpoints = 0;            // checkpoints compared
  std::vector<std::string> findings;  // one line each, the worst first
};

// Verifies the chain, then every checkpoint of `me` the store holds (its
// own, and copies partners handed back) and `extra`, against it. A
// checkpoint not signed by `me` is a finding (kBroken), not an error.
Result<CheckpointAudit> AuditAccessLog(Store& store, const PublicIdentity& me, const std::vector<CheckpointSource>& extra);

// The reason a sync rejection of a checkpoint is counted under (metrics,
// log), for a non-ok Node::IngestCheckpoint status.
Reject CheckpointRejectReason(const Status& st);

// "2026-11-29T07:21:12Z" for Unix milliseconds.
std::string FormatUtc(int64_t ms);

// The JSON a partner exports for `audit verify --checkpoint` and reads back:
// {"org":..., "holder":..., "entries":..., "record":"<hex>"} per line.
std::string CheckpointToJson(const CheckpointRow& c);
Result<Checkpoint> CheckpointFromJson(const std::string& line);

}  // namespace kring
