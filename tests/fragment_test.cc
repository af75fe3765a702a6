// Unit tests of plan fragments (protocol/fragment.h), their records, the audience rule and the hybrid logical clock.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "crypto/primitives.h"
#include "protocol/fragment.h"
#include "protocol/hlc.h"
#include "protocol/messages.h"

namespace kring {
namespace {

// The signing context of fragments; part of the wire contract (a re-signing
// attacker would use it too).
constexpr std::string_view kFragmentContext = "kring/fragment/v1";

Bytes BytesOf(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Three organisations sharing a case, and one outsider.
struct Orgs {
  NodeIdentity a = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  NodeIdentity b = NodeIdentity::Generate("zorg-b", "Zorgaanbieder B");
  NodeIdentity c = NodeIdentity::Generate("ggd-c", "GGD C");
  NodeIdentity outsider = NodeIdentity::Generate("mallory", "Mallory");

  FragmentDraft Draft() const {
    FragmentDraft d;
    d.case_id = NewCaseId();
    d.kind = "hulpvraag";
    d.domain = "wonen";
    d.hlc = MakeHlc(1'700'000'000'000ull, 3);
    d.item = HashParts("test", {BytesOf("item")});
    d.predecessors = {HashParts("test", {BytesOf("p1")}), HashParts("test", {BytesOf("p2")})};
    d.body = BytesOf("{\"doel\":\"stabiele woonsituatie\"}");
    d.recipients = {b.pub, c.pub};
    return d;
  }

  Fragment Sealed() const {
    Result<Fragment> f = SealFragment(Draft(), a);
    REQUIRE_MESSAGE(f.ok(), f.status().ToString());
    return *f;
  }
};

std::vector<std::string> RecipientOrgs(const Fragment& f) {
  std::vector<std::string> out;
  for (const Recipient& r : f.header.recipients.v) out.push_back(r.org.v);
  return out;
}

// An identity whose org differs per index; used to fill recipient lists.
PublicIdentity NumberedOrg(size_t i) {
  PublicIdentity p;
  p.org = "org-" + std::to_string(100 + i);
  p.display_name = "Org";
  crypto_box_keypair(p.box_pk.data(), BoxSecretKey().data());
  return p;
}

}  // namespace

TEST_CASE("a sealed fragment survives its record encoding, verifies with the author's key and opens for every recipient") {
  Orgs o;
  const FragmentDraft d = o.Draft();
  Result<Fragment> sealed = SealFragment(d, o.a);
  REQUIRE(sealed.ok());

  const Bytes record = EncodeFragmentRecord(*sealed);
  CHECK(record[0] == static_cast<uint8_t>(RecordType::kFragment));
  Result<Fragment> f = DecodeFragmentRecord(record);
  REQUIRE_MESSAGE(f.ok(), f.status().ToString());
  CHECK(EncodeFragmentRecord(*f) == record);

  Status verified = VerifyFragment(*f, o.a.pub.sign_pk);
  CHECK_MESSAGE(verified.ok(), verified.ToString());
  CHECK(f->header.case_id == d.case_id);
  CHECK(f->header.author.v == "gemeente-a");
  CHECK(f->header.kind.v == d.kind);
  CHECK(f->header.domain.v == d.domain);
  CHECK(f->header.hlc == d.hlc);
  CHECK(f->header.predecessors.v == d.predecessors);
  for (const NodeIdentity* me : {&o.a, &o.b, &o.c}) {
    CAPTURE(me->pub.org);
    Result<Bytes> body = OpenFragment(*f, *me);
    REQUIRE_MESSAGE(body.ok(), body.status().ToString());
    CHECK(*body == d.body);
  }
}

TEST_CASE("the ciphertext does not contain the plaintext body") {
  Orgs o;
  Fragment f = o.Sealed();
  const Bytes body = o.Draft().body;
  const Bytes record = EncodeFragmentRecord(f);
  CHECK(std::search(record.begin(), record.end(), body.begin(), body.end()) == record.end());
}

TEST_CASE("an organisation that is not a recipient cannot open the fragment") {
  Orgs o;
  Result<Bytes> body = OpenFragment(o.Sealed(), o.outsider);
  REQUIRE_FALSE(body.ok());
  CHECK(body.status().code() == Status::Code::kPermissionDenied);
}

TEST_CASE("an organisation named as recipient but holding other keys cannot open the fragment") {
  Orgs o;
  NodeIdentity impostor = NodeIdentity::Generate("zorg-b", "Not really B");
  Result<Bytes> body = OpenFragment(o.Sealed(), impostor);
  REQUIRE_FALSE(body.ok());
  CHECK(body.status().code() == Status::Code::kCorruption);
}

TEST_CASE("the author is a recipient even when the draft does not name it") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.recipients.clear();
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE(f.ok());
  CHECK(RecipientOrgs(*f) == std::vector<std::string>{"gemeente-a"});
  CHECK(f->IsRecipient("gemeente-a"));
  Result<Bytes> body = OpenFragment(*f, o.a);
  REQUIRE(body.ok());
  CHECK(*body == d.body);
}

TEST_CASE("recipients are listed sorted by organisation and each once") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.recipients = {o.b.pub, o.c.pub, o.b.pub, o.a.pub, o.c.pub};
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE(f.ok());
  CHECK(RecipientOrgs(*f) == std::vector<std::string>{"gemeente-a", "ggd-c", "zorg-b"});
  CHECK(VerifyFragment(*f, o.a.pub.sign_pk).ok());
}

TEST_CASE("the author can open its fragment even when the draft lists the author's organisation with another key") {
  Orgs o;
  PublicIdentity stale = o.a.pub;
  crypto_box_keypair(stale.box_pk.data(), BoxSecretKey().data());
  FragmentDraft d = o.Draft();
  d.recipients.clear();
  // Enough recipients that std::sort leaves insertion sort, with the stale entry in several places.
  size_t position = 0;
  SUBCASE("first") { position = 0; }
  SUBCASE("middle") { position = 20; }
  SUBCASE("last") { position = 40; }
  for (size_t i = 0; i < 40; ++i) {
    if (i == position) d.recipients.push_back(stale);
    d.recipients.push_back(NumberedOrg(i));
  }
  if (position == 40) d.recipients.push_back(stale);
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE(f.ok());
  const std::vector<std::string> orgs = RecipientOrgs(*f);
  CHECK(std::count(orgs.begin(), orgs.end(), "gemeente-a") == 1);
  Result<Bytes> body = OpenFragment(*f, o.a);
  CHECK_MESSAGE(body.ok(), body.status().ToString());
}

TEST_CASE("a fragment's id is the same after its record is encoded and decoded") {
  Orgs o;
  Fragment f = o.Sealed();
  Result<Fragment> decoded = DecodeFragmentRecord(EncodeFragmentRecord(f));
  REQUIRE(decoded.ok());
  CHECK(decoded->Id() == f.Id());
  CHECK(f.Id() == f.Id());
}

TEST_CASE("a fragment's id changes when any header field or ciphertext byte changes") {
  Orgs o;
  const Fragment f = o.Sealed();
  const FragmentId id = f.Id();
  Fragment g = f;
  SUBCASE("format") { g.header.format = 2; }
  SUBCASE("case id") { g.header.case_id[15] ^= 1; }
  SUBCASE("author") { g.header.author.v = "zorg-b"; }
  SUBCASE("kind") { g.header.kind.v = "hulpvraah"; }
  SUBCASE("domain") { g.header.domain.v = "werk"; }
  SUBCASE("domain emptied") { g.header.domain.v.clear(); }
  SUBCASE("hlc") { g.header.hlc += 1; }
  SUBCASE("predecessor changed") { g.header.predecessors.v[1][0] ^= 1; }
  SUBCASE("predecessor dropped") { g.header.predecessors.v.pop_back(); }
  SUBCASE("recipient organisation") { g.header.recipients.v[1].org.v = "ggd-d"; }
  SUBCASE("recipient dropped") { g.header.recipients.v.pop_back(); }
  SUBCASE("sealed key") { g.header.recipients.v[0].sealed_key[0] ^= 1; }
  SUBCASE("nonce") { g.header.nonce[23] ^= 1; }
  SUBCASE("first ciphertext byte") { g.ciphertext.v.front() ^= 1; }
  SUBCASE("middle ciphertext byte") { g.ciphertext.v[g.ciphertext.v.size() / 2] ^= 1; }
  SUBCASE("last ciphertext (tag) byte") { g.ciphertext.v.back() ^= 1; }
  SUBCASE("ciphertext extended") { g.ciphertext.v.push_back(0); }
  CHECK(g.Id() != id);
}

TEST_CASE("a fragment's id does not depend on its signature") {
  Orgs o;
  Fragment f = o.Sealed();
  const FragmentId id = f.Id();
  f.signature[0] ^= 1;
  CHECK(f.Id() == id);
}

TEST_CASE("a fragment with a tampered ciphertext fails verification and does not open") {
  Orgs o;
  Fragment f = o.Sealed();
  f.ciphertext.v[0] ^= 0x01;
  Status st = VerifyFragment(f, o.a.pub.sign_pk);
  CHECK(st.code() == Status::Code::kCorruption);
  CHECK(st.message().find("signature") != std::string::npos);
  CHECK(OpenFragment(f, o.b).status().code() == Status::Code::kCorruption);
}

TEST_CASE("a tampered fragment re-signed by another key does not verify against the author's key") {
  Orgs o;
  Fragment f = o.Sealed();
  f.ciphertext.v[0] ^= 0x01;
  f.signature = Sign(kFragmentContext, f.Id(), o.outsider.sign_sk);
  CHECK(VerifyFragment(f, o.outsider.pub.sign_pk).ok());  // the re-signature itself is sound...
  CHECK(VerifyFragment(f, o.a.pub.sign_pk).code() == Status::Code::kCorruption);  // ...but not the author's
}

TEST_CASE("a fragment sealed by an impostor using the author's organisation does not verify against the author's key") {
  Orgs o;
  NodeIdentity impostor = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  Result<Fragment> f = SealFragment(o.Draft(), impostor);
  REQUIRE(f.ok());
  CHECK(f->header.author.v == "gemeente-a");
  CHECK(VerifyFragment(*f, o.a.pub.sign_pk).code() == Status::Code::kCorruption);
}

TEST_CASE("a fragment with a tampered header fails verification") {
  Orgs o;
  Fragment f = o.Sealed();
  SUBCASE("kind") { f.header.kind.v = "signaal"; }
  SUBCASE("domain") { f.header.domain.v = "werk"; }
  SUBCASE("hlc") { f.header.hlc += 1; }
  SUBCASE("case id") { f.header.case_id[0] ^= 1; }
  SUBCASE("a recipient dropped") {
    auto& r = f.header.recipients.v;
    r.erase(std::find_if(r.begin(), r.end(), [](const Recipient& x) { return x.org.v == "zorg-b"; }));
  }
  SUBCASE("a recipient added") {
    Recipient extra;
    extra.org.v = "zzz-late";
    f.header.recipients.v.push_back(extra);
  }
  SUBCASE("a recipient's sealed key swapped") {
    std::swap(f.header.recipients.v[0].sealed_key, f.header.recipients.v[1].sealed_key);
  }
  SUBCASE("a predecessor dropped") { f.header.predecessors.v.pop_back(); }
  SUBCASE("nonce") { f.header.nonce[0] ^= 1; }
  Status st = VerifyFragment(f, o.a.pub.sign_pk);
  CHECK(st.code() == Status::Code::kCorruption);
}

TEST_CASE("a fragment whose header changed does not open, even without verification") {
  Orgs o;
  Fragment f = o.Sealed();
  SUBCASE("kind") { f.header.kind.v = "signaal"; }
  SUBCASE("hlc") { f.header.hlc += 1; }
  SUBCASE("another recipient's entry added") {
    Recipient extra;
    extra.org.v = "zzz-late";
    f.header.recipients.v.push_back(extra);
  }
  CHECK(OpenFragment(f, o.b).status().code() == Status::Code::kCorruption);
}

TEST_CASE("a receiver rejects a header that breaks the structural rules") {
  Orgs o;
  Fragment f = o.Sealed();
  FragmentHeader& h = f.header;
  std::string reason;
  SUBCASE("unknown format") { h.format = 2; reason = "format"; }
  SUBCASE("author not a slug") { h.author.v = "Gemeente A"; reason = "author"; }
  SUBCASE("empty kind") { h.kind.v.clear(); reason = "kind"; }
  SUBCASE("kind not a slug") { h.kind.v = "Hulp"; reason = "kind"; }
  SUBCASE("domain not a slug") { h.domain.v = "wonen!"; reason = "domain"; }
  SUBCASE("recipient not a slug") { h.recipients.v[1].org.v = "GGD"; reason = "recipient"; }
  SUBCASE("recipients out of order") {
    std::swap(h.recipients.v[0], h.recipients.v[2]);
    reason = "sorted";
  }
  SUBCASE("recipient listed twice") {
    h.recipients.v.push_back(h.recipients.v.back());
    reason = "unique";
  }
  SUBCASE("author not among the recipients") {
    h.recipients.v.erase(h.recipients.v.begin());  // "gemeente-a" sorts first
    reason = "author is not among";
  }
  SUBCASE("duplicate predecessor") {
    h.predecessors.v[1] = h.predecessors.v[0];
    reason = "predecessor";
  }
  Status st = ValidateFragmentHeader(h);
  CHECK(st.code() == Status::Code::kCorruption);
  CHECK_MESSAGE(st.message().find(reason) != std::string::npos, st.message());
  CHECK(VerifyFragment(f, o.a.pub.sign_pk).code() == Status::Code::kCorruption);
}

TEST_CASE("a fragment whose ciphertext is shorter than a tag fails verification") {
  Orgs o;
  Fragment f = o.Sealed();
  f.ciphertext.v.resize(kAeadTagBytes - 1);
  f.signature = Sign(kFragmentContext, f.Id(), o.a.sign_sk);
  CHECK(VerifyFragment(f, o.a.pub.sign_pk).code() == Status::Code::kCorruption);
}

TEST_CASE("every truncated prefix of a fragment record is rejected by DecodeFragmentRecord") {
  Orgs o;
  const Bytes record = EncodeFragmentRecord(o.Sealed());
  for (size_t len = 0; len < record.size(); ++len) {
    CAPTURE(len);
    Result<Fragment> f = DecodeFragmentRecord(ByteSpan(record).first(len));
    REQUIRE_FALSE(f.ok());
    CHECK(f.status().code() == Status::Code::kCorruption);
  }
}

TEST_CASE("a fragment record with trailing bytes is rejected") {
  Orgs o;
  Bytes record = EncodeFragmentRecord(o.Sealed());
  record.push_back(0);
  Result<Fragment> f = DecodeFragmentRecord(record);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == Status::Code::kCorruption);
}

TEST_CASE("a record of an unknown type is rejected") {
  Orgs o;
  Bytes record = EncodeFragmentRecord(o.Sealed());
  record[0] = 2;
  Result<Fragment> f = DecodeFragmentRecord(record);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == Status::Code::kCorruption);
  CHECK(f.status().message().find("unknown record type 2") != std::string::npos);
}

TEST_CASE("a body larger than kMaxBodyBytes is refused as ResourceExhausted") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.body.assign(kMaxBodyBytes + 1, 'x');
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == Status::Code::kResourceExhausted);
}

TEST_CASE("a body of exactly kMaxBodyBytes is sealed, travels as a record and opens") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.body.assign(kMaxBodyBytes, 'x');
  Result<Fragment> sealed = SealFragment(d, o.a);
  REQUIRE(sealed.ok());
  const Bytes record = EncodeFragmentRecord(*sealed);
  CHECK(record.size() <= kMaxRecordBytes);
  Result<Fragment> f = DecodeFragmentRecord(record);
  REQUIRE_MESSAGE(f.ok(), f.status().ToString());
  CHECK(VerifyFragment(*f, o.a.pub.sign_pk).ok());
  Result<Bytes> body = OpenFragment(*f, o.c);
  REQUIRE(body.ok());
  CHECK(*body == d.body);
}

TEST_CASE("an empty body is sealed and opens as empty") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.body.clear();
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE(f.ok());
  CHECK(VerifyFragment(*f, o.a.pub.sign_pk).ok());
  Result<Bytes> body = OpenFragment(*f, o.b);
  REQUIRE(body.ok());
  CHECK(body->empty());
}

TEST_CASE("SealFragment refuses a kind that is not a slug of at most 32 characters") {
  Orgs o;
  FragmentDraft d = o.Draft();
  SUBCASE("empty") { d.kind = ""; }
  SUBCASE("upper case") { d.kind = "Hulpvraag"; }
  SUBCASE("space") { d.kind = "hulp vraag"; }
  SUBCASE("underscore") { d.kind = "hulp_vraag"; }
  SUBCASE("33 characters") { d.kind = std::string(33, 'k'); }
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("SealFragment refuses a domain that is neither empty nor a slug of at most 32 characters") {
  Orgs o;
  FragmentDraft d = o.Draft();
  SUBCASE("upper case") { d.domain = "Wonen"; }
  SUBCASE("slash") { d.domain = "wonen/werk"; }
  SUBCASE("33 characters") { d.domain = std::string(33, 'd'); }
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("SealFragment accepts an empty domain and slugs at their limits") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.domain.clear();
  d.kind = std::string(32, 'k');
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE_MESSAGE(f.ok(), f.status().ToString());
  CHECK(VerifyFragment(*f, o.a.pub.sign_pk).ok());
  d.domain = std::string(32, 'd');
  CHECK(SealFragment(d, o.a).ok());
}

TEST_CASE("SealFragment refuses a recipient that is not a valid organisation slug") {
  Orgs o;
  FragmentDraft d = o.Draft();
  PublicIdentity bad = o.b.pub;
  SUBCASE("upper case") { bad.org = "Zorg-B"; }
  SUBCASE("one character") { bad.org = "z"; }
  SUBCASE("empty") { bad.org = ""; }
  SUBCASE("65 characters") { bad.org = std::string(65, 'z'); }
  d.recipients.push_back(bad);
  Result<Fragment> f = SealFragment(d, o.a);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("SealFragment refuses more than kMaxPredecessors predecessors") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.predecessors.clear();
  for (size_t i = 0; i <= kMaxPredecessors; ++i) d.predecessors.push_back(HashParts("p", {BytesOf(std::to_string(i))}));
  CHECK(SealFragment(d, o.a).status().code() == Status::Code::kInvalidArgument);
  d.predecessors.pop_back();
  CHECK(SealFragment(d, o.a).ok());
}

TEST_CASE("a first version names no item and an edit names its item and predecessors") {
  Orgs o;
  FragmentDraft d = o.Draft();
  SUBCASE("an edit without an item") {
    d.item = FragmentId{};
    CHECK(SealFragment(d, o.a).status().code() == Status::Code::kInvalidArgument);
  }
  SUBCASE("an item without predecessors") {
    d.predecessors.clear();
    CHECK(SealFragment(d, o.a).status().code() == Status::Code::kInvalidArgument);
  }
  SUBCASE("a first version's item id is its own id, an edit's is the item it names") {
    FragmentDraft first = o.Draft();
    first.item = FragmentId{};
    first.predecessors.clear();
    auto f = SealFragment(first, o.a);
    REQUIRE(f.ok());
    CHECK(f->ItemId() == f->Id());
    auto e = SealFragment(d, o.a);
    REQUIRE(e.ok());
    CHECK(e->ItemId() == d.item);
  }
  SUBCASE("a received header that breaks the rule is corrupt") {
    auto f = SealFragment(d, o.a);
    REQUIRE(f.ok());
    f->header.predecessors.v.clear();
    CHECK(ValidateFragmentHeader(f->header).code() == Status::Code::kCorruption);
  }
}

TEST_CASE("SealFragment refuses duplicate predecessors") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.predecessors.push_back(d.predecessors.front());
  CHECK_FALSE(SealFragment(d, o.a).ok());
}

TEST_CASE("SealFragment refuses more than kMaxRecipients recipients, the author included") {
  Orgs o;
  FragmentDraft d = o.Draft();
  d.recipients.clear();
  for (size_t i = 0; i + 1 < kMaxRecipients; ++i) d.recipients.push_back(NumberedOrg(i));
  Result<Fragment> full = SealFragment(d, o.a);
  REQUIRE_MESSAGE(full.ok(), full.status().ToString());
  CHECK(full->header.recipients.v.size() == kMaxRecipients);
  Result<Fragment> decoded = DecodeFragmentRecord(EncodeFragmentRecord(*full));
  REQUIRE(decoded.ok());
  CHECK(VerifyFragment(*decoded, o.a.pub.sign_pk).ok());

  d.recipients.push_back(NumberedOrg(kMaxRecipients));
  CHECK(SealFragment(d, o.a).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("IsRecipient is true exactly for the fragment's recipients") {
  Orgs o;
  const Fragment f = o.Sealed();
  CHECK(f.IsRecipient("gemeente-a"));
  CHECK(f.IsRecipient("zorg-b"));
  CHECK(f.IsRecipient("ggd-c"));
  CHECK_FALSE(f.IsRecipient("mallory"));
  CHECK_FALSE(f.IsRecipient(""));
  CHECK_FALSE(f.IsRecipient("zorg"));
  CHECK_FALSE(f.IsRecipient("zorg-b "));
  CHECK_FALSE(f.IsRecipient("ZORG-B"));
}

TEST_CASE("slugs for kinds and domains are [a-z0-9-] of length 1 to max") {
  CHECK(IsValidSlug("a", 32));
  CHECK(IsValidSlug("plan-2", 32));
  CHECK(IsValidSlug(std::string(32, 'x'), 32));
  CHECK_FALSE(IsValidSlug("", 32));
  CHECK_FALSE(IsValidSlug(std::string(33, 'x'), 32));
  CHECK_FALSE(IsValidSlug("Plan", 32));
  CHECK_FALSE(IsValidSlug("plan.2", 32));
}

TEST_CASE("case ids round trip through hex and new ones differ") {
  CaseId id = NewCaseId();
  CaseId back{};
  REQUIRE(CaseIdFromHex(CaseIdToHex(id), &back));
  CHECK(back == id);
  CHECK(CaseIdToHex(id).size() == 2 * kCaseIdBytes);
  CHECK(NewCaseId() != id);
  CHECK_FALSE(CaseIdFromHex("abcd", &back));
}

TEST_CASE("HybridClock::Now follows a wall clock that moves forward") {
  uint64_t wall = 1'700'000'000'000ull;
  HybridClock clock([&] { return wall; });
  CHECK(clock.Now() == MakeHlc(wall, 0));
  wall += 5;
  CHECK(clock.Now() == MakeHlc(wall, 0));
}

TEST_CASE("HybridClock::Now is strictly increasing when the wall clock stands still or goes back") {
  uint64_t wall = 1'700'000'000'000ull;
  HybridClock clock([&] { return wall; });
  HlcTimestamp prev = clock.Now();
  for (int i = 0; i < 1000; ++i) {
    if (i == 500) wall -= 10'000;  // NTP steps the clock back
    HlcTimestamp t = clock.Now();
    REQUIRE(t > prev);
    prev = t;
  }
  CHECK(HlcMillis(prev) == 1'700'000'000'000ull);
}

TEST_CASE("HybridClock::Now is unique across threads") {
  uint64_t wall = 1'700'000'000'000ull;  // never changes: every stamp comes from the counter
  HybridClock clock([&] { return wall; });
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<std::vector<HlcTimestamp>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) got[t].push_back(clock.Now());
    });
  for (auto& th : threads) th.join();
  std::set<HlcTimestamp> all;
  for (const auto& v : got) all.insert(v.begin(), v.end());
  CHECK(all.size() == static_cast<size_t>(kThreads * kEach));
}

TEST_CASE("HybridClock::Observe adopts a plausible remote time so later stamps come after it") {
  uint64_t wall = 1'700'000'000'000ull;
  HybridClock clock([&] { return wall; });
  clock.Now();
  const HlcTimestamp remote = MakeHlc(wall + 30'000, 7);  // a peer 30 s ahead
  CHECK(clock.Observe(remote));
  CHECK(clock.Now() > remote);
}

TEST_CASE("HybridClock::Observe accepts a remote time exactly kMaxClockSkewMillis ahead") {
  uint64_t wall = 1'700'000'000'000ull;
  HybridClock clock([&] { return wall; });
  const HlcTimestamp remote = MakeHlc(wall + kMaxClockSkewMillis, 0xffff);
  CHECK(clock.Observe(remote));
  CHECK(clock.Now() > remote);
}

TEST_CASE("HybridClock::Observe refuses a remote time beyond kMaxClockSkewMillis and leaves the clock as it was") {
  uint64_t wall = 1'700'000'000'000ull;
  HybridClock clock([&] { return wall; });
  const HlcTimestamp before = clock.Now();
  HlcTimestamp remote = 0;
  SUBCASE("one millisecond too far") { remote = MakeHlc(wall + kMaxClockSkewMillis + 1, 0); }
  SUBCASE("the largest timestamp") { remote = ~HlcTimestamp{0}; }
  CHECK_FALSE(clock.Observe(remote));
  CHECK(clock.Now() == before + 1);
}

TEST_CASE("HybridClock::Observe of an older remote time does not move the clock back") {
  uint64_t wall = 1'700'000'000'000ull;
  HybridClock clock([&] { return wall; });
  const HlcTimestamp now = clock.Now();
  CHECK(clock.Observe(MakeHlc(wall - 60'000, 0)));
  CHECK(clock.Now() > now);
}

}  // namespace kring
