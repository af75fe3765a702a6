// Scenario 1: the limits of the primitives every later figure is compared with, single core, this machine.
#include <cstdio>
#include <sqlite3.h>
#include <unistd.h>

#include "bench/bench.h"
#include "crypto/primitives.h"
#include "crypto/sodium.h"
#include "plan/items.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "node/store.h"

namespace kring::bench {

namespace {

// Runs `op` in batches until `seconds` pass; returns operations per second.
template <class Op>
double Rate(double seconds, Op op, size_t batch = 64) {
  auto t0 = Clock::now();
  size_t n = 0;
  do {
    for (size_t i = 0; i < batch; ++i) op();
    n += batch;
  } while (Since(t0) < seconds);
  return static_cast<double>(n) / Since(t0);
}

// 4 KB rows inserted in transactions of `batch`, WAL, synchronous=FULL like the node.
double SqliteRowsPerSecond(const std::string& dir, double seconds, size_t batch, const char* sync) {
  std::string path = dir + "/primitive.db";
  for (const char* s : {"", "-wal", "-shm"}) ::unlink((path + s).c_str());
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return 0;
  std::string pragmas = std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") + sync + ";";
  sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr);
  sqlite3_exec(db, "CREATE TABLE t (id BLOB PRIMARY KEY, body BLOB NOT NULL)", nullptr, nullptr, nullptr);
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t (id, body) VALUES (?, ?)", -1, &ins, nullptr);
  Bytes body(4096);
  RandomBytes(body);
  Hash id;
  auto t0 = Clock::now();
  size_t n = 0;
  do {
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (size_t i = 0; i < batch; ++i) {
      RandomBytes(id);
      sqlite3_bind_blob(ins, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
      sqlite3_bind_blob(ins, 2, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
      sqlite3_step(ins);
      sqlite3_reset(ins);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    n += batch;
  } while (Since(t0) < seconds);
  double rate = static_cast<double>(n) / Since(t0);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  for (const char* s : {"", "-wal", "-shm"}) ::unlink((path + s).c_str());
  return rate;
}

// The node's real store (node/store.h: its schema, indexes, triggers and
// pragmas) taking 4 KB notes through Store::PutRecords, `batch` rows per
// call (one transaction), each with a two-organisation audience, spread
// over 1,000 cases: what ingest's commit does. The rows carry one real
// sealed note's bytes under fresh random ids (the store does not look
// inside a record). Returns rows per second.
double StoreRowsPerSecond(const std::string& dir, double seconds, size_t batch, const Bytes& record) {
  std::string path = dir + "/primitive-store.db";
  for (const char* s : {"", "-wal", "-shm"}) ::unlink((path + s).c_str());
  double rate = 0;
  {
    auto store = Store::Open(path);
    if (!store.ok()) return 0;
    std::vector<CaseId> cases(1000);
    for (CaseId& c : cases) c = NewCaseId();
    HlcTimestamp hlc = MakeHlc(1735689600000, 0);
    std::vector<RecordRow> rows(batch);
    auto t0 = Clock::now();
    size_t n = 0;
    do {
      for (size_t i = 0; i < batch; ++i) {
        RecordRow& row = rows[i];
        RandomBytes(row.id);
        row.type = RecordType::kFragment;
        row.case_id = cases[(n + i) % cases.size()];
        row.author = "gemeente-a";
        row.kind = "note";
        row.hlc = ++hlc;
        row.record = record;
        row.audience = {"gemeente-a", "zorg-b"};
      }
      auto added = (*store)->PutRecords(rows, "gemeente-a", 1735689600000);
      if (!added.ok() || added->size() != batch) return 0;
      n += batch;
    } while (Since(t0) < seconds);
    rate = static_cast<double>(n) / Since(t0);
  }
  for (const char* s : {"", "-wal", "-shm"}) ::unlink((path + s).c_str());
  return rate;
}

}  // namespace

void RunPrimitives(const Sizes& s, Report& r) {
  Progress("1. primitive limits (single core)");
  const double t = s.primitive_seconds;
  const char* sc = "1 primitives";

  // Ed25519: verify a signature over a 4 KB message.
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES], sig[crypto_sign_BYTES];
  crypto_sign_keypair(pk, sk);
  Bytes msg(4096);
  RandomBytes(msg);
  crypto_sign_detached(sig, nullptr, msg.data(), msg.size(), sk);
  int bad = 0;
  double verify = Rate(t, [&] { bad |= crypto_sign_verify_detached(sig, msg.data(), msg.size(), pk); });
  SetVerifyLimitPerSecond(verify);
  r.Row(sc, "Ed25519 verify, 4 KB message", verify, "/s", "", std::nullopt, bad ? "VERIFY FAILED" : "the ceiling for catch-up");
  r.Set("verify_limit_per_s", std::round(verify));

  // What kring does per received fragment instead: BLAKE2b-256 of the 4 KB
  // (header and ciphertext) for the id, Ed25519 over the 32-byte id.
  SignSecretKey ssk;
  std::copy(sk, sk + sizeof sk, ssk.data());
  SignPublicKey spk;
  std::copy(pk, pk + sizeof pk, spk.begin());
  Hash id0 = HashParts("kring/fragment/v1", {msg});
  Signature fsig = Sign("kring/fragment/v1", id0, ssk);
  double id_verify = Rate(t, [&] {
    Hash id = HashParts("kring/fragment/v1", {msg});
    bad |= !Verify("kring/fragment/v1", id, fsig, spk);
  });
  r.Row(sc, "BLAKE2b id of 4 KB + Ed25519 verify of the id", id_verify, "/s", "", std::nullopt,
        "what VerifyFragment does per fragment");

  Bytes note_record;  // a real 4 KB note sealed to one reader, for the store loop below
  // What a receiving node must do per fragment whatever else it does: decode,
  // verify, open the content key, decrypt and validate the body (the node's
  // own functions on a real 4 KB note sealed to two organisations).
  {
    NodeIdentity author = NodeIdentity::Generate("gemeente-a", "A");
    NodeIdentity reader = NodeIdentity::Generate("zorg-b", "B");
    FragmentDraft d;
    d.case_id = NewCaseId();
    d.kind = "note";
    d.hlc = MakeHlc(1735689600000, 0);
    d.recipients = {reader.pub};
    std::string body = nlohmann::json{{"text", std::string(3989, 'x')}}.dump();
    d.body.assign(body.begin(), body.end());
    auto f = SealFragment(d, author);
    Bytes record = f.ok() ? EncodeFragmentRecord(*f) : Bytes();
    note_record = record;
    double checks = Rate(t, [&] {
      auto g = DecodeFragmentRecord(record);
      if (!g.ok() || !VerifyFragment(*g, author.pub.sign_pk).ok()) {
        bad = 1;
        return;
      }
      auto plain = OpenFragment(*g, reader);
      if (!plain.ok()) {
        bad = 1;
        return;
      }
      auto data = nlohmann::json::parse(plain->begin(), plain->end(), nullptr, false);
      bad |= !ValidateFragmentItem(g->header.kind.v, g->header.domain.v, data).ok();
    }, 16);
    r.Row(sc, "a receiver's checks of one 4 KB fragment", checks, "/s", "", std::nullopt,
          "decode, verify, open key, decrypt, validate: the node's own code, one core");
    r.Set("fragment_checks_per_s", std::round(checks));
  }

  // Sealed box: open a sealed 32-byte content key.
  unsigned char bpk[crypto_box_PUBLICKEYBYTES], bsk[crypto_box_SECRETKEYBYTES];
  crypto_box_keypair(bpk, bsk);
  unsigned char key[32], sealed[32 + crypto_box_SEALBYTES], opened[32];
  RandomBytes(key);
  crypto_box_seal(sealed, key, sizeof key, bpk);
  double opens = Rate(t, [&] { bad |= crypto_box_seal_open(opened, sealed, sizeof sealed, bpk, bsk); });
  r.Row(sc, "sealed-box open (content key)", opens, "/s");
  r.Set("sealed_open_per_s", std::round(opens));

  // XChaCha20-Poly1305: decrypt (and authenticate) 4 KB messages.
  unsigned char aead_key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES], nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
  RandomBytes(aead_key);
  RandomBytes(nonce);
  Bytes ct(msg.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES), pt(msg.size());
  unsigned long long ct_len = 0, pt_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(ct.data(), &ct_len, msg.data(), msg.size(), nullptr, 0, nullptr, nonce, aead_key);
  double decrypts = Rate(t, [&] {
    bad |= crypto_aead_xchacha20poly1305_ietf_decrypt(pt.data(), &pt_len, nullptr, ct.data(), ct_len, nullptr, 0, nonce, aead_key);
  });
  double aead_mb = decrypts * 4096.0 / 1e6;
  r.Row(sc, "XChaCha20-Poly1305 decrypt, 4 KB messages", aead_mb, "MB/s");
  r.Set("aead_mb_per_s", std::round(aead_mb));

  // The node's store: real schema, real PutRecords, batched.
  std::string dir = "/tmp";
  double store_rows = StoreRowsPerSecond(dir, t * 2, s.sqlite_batch, note_record);
  r.Row(sc, "Store::PutRecords, 4 KB notes, " + std::to_string(s.sqlite_batch) + " per call, the node's schema", store_rows,
        "/s", "", std::nullopt,
        std::to_string(store_rows > 0 ? 1e6 / store_rows : 0.0).substr(0, 5) +
            " us per row: the store's real insert (indexes, audience rows, triggers, FULL)");
  r.Set("store_put_rows_per_s", std::round(store_rows));
  // SQLite WAL: 4 KB rows in a two-column table, batched; and single-row commits (one fsync each).
  double rows = SqliteRowsPerSecond(dir, t * 2, s.sqlite_batch, "FULL");
  r.Row(sc, "SQLite WAL insert, two-column table (id, body), 4 KB rows, " + std::to_string(s.sqlite_batch) +
                "/transaction, FULL",
        rows, "/s", "", std::nullopt,
        "not the node's schema: the lower bound of any insert; " +
            std::to_string(store_rows > 0 ? rows / store_rows : 0.0).substr(0, 4) + "x the store's rate");
  r.Set("sqlite_rows_per_s", std::round(rows));
  double commits = SqliteRowsPerSecond(dir, t * 2, 1, "FULL");
  r.Row(sc, "SQLite WAL commit of one 4 KB row, FULL", commits, "/s", "", std::nullopt, "one durable write: its fsync");
  r.Set("sqlite_commits_per_s", std::round(commits));
  if (bad) r.Note("a primitive self-check failed: the primitive figures are not trustworthy");
}

}  // namespace kring::bench
