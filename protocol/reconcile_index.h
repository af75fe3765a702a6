// One reconciliation index for every partner: all records in (hlc, id) order, updated in place, with a view per partner.
//
// Why this shape. A partner's set is the records whose audience includes
// both it and this node. Partners' sets overlap almost entirely (a record
// is addressed to every organisation on its case), so one set per partner
// stored the same keys 15-30 times over. Here the keys are stored once, in
// one B+-tree ordered like the protocol orders them, each with its audience
// class (the sorted set of organisations it is addressed to, interned).
// Each partner is a view: a bit per view in every class says whether the
// class holds both that partner and this node. Every tree node keeps, per
// view, the ReconcileSummary of the items of the view below it (count, sum
// and check are additive), so the protocol's questions for a view (the
// rank of a key, the item of a rank, the summary of a rank range) cost
// O(height x fan-out), and storing, purging or readdressing a record costs
// O(height + views) with no rebuild. Partners whose audiences coincide get
// the same answers from different views; sharing the per-node summaries
// between them would save only those summaries (the smaller part), at the
// price of re-sharing whenever a new audience separates them.
//
// Memory, bounded per record: 44 bytes a key (40 of key, 4 of class) in
// leaves of up to kLeafItems, plus per leaf 48 bytes a view (about half a
// byte per record per partner with full leaves), plus the inner nodes (a
// sixty-fourth of that). At 1,000,000 records and 10 partners, about 50 MB
// for all of them, where one ReconcileSet was 44 MB per partner.
//
// Purges leave leaves under-full (an empty leaf is removed); a tree whose
// leaves fall below a quarter full on average is rebuilt on the next change.
//
// Thread safety: one writer or many readers (a shared mutex). Writers
// (Apply, Reset, SetPartners) take it exclusively. A reader takes
// ReadLock() for as long as it uses views: one reconciliation message, so
// that both the fingerprints it compares and those it sends come from one
// state of the set. Between messages the set may change; the protocol
// tolerates that (protocol/reconcile.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "protocol/reconcile.h"

namespace kring {

class ReconcileIndex {
 public:
  static constexpr size_t kLeafItems = 128;
  static constexpr size_t kInnerChildren = 64;
  static constexpr size_t kMaxViews = 64;  // partners with a view; more get none (see ViewFor)

  // `self` is this node's organisation: a view holds what is addressed to both.
  explicit ReconcileIndex(std::string self);
  ~ReconcileIndex();
  ReconcileIndex(const ReconcileIndex&) = delete;
  ReconcileIndex& operator=(const ReconcileIndex&) = delete;

  // One audience row added or removed: `org` is (no longer) among the
  // organisations item `key` is addressed to. An item is in the index while
  // it is addressed to anyone.
  struct RowChange {
    ItemKey key;
    std::string org;
    bool added = true;
  };

  // Applies the changes of one committed transaction, in order. Rows already
  // present (or already absent) change nothing. Takes the lock exclusively.
  void Apply(const std::vector<RowChange>& changes);

  // Replaces the whole content: each item with its audience. Takes the lock
  // exclusively. For the start, and after another process wrote the database.
  struct Entry {
    ItemKey key;
    std::vector<std::string> audience;
  };
  void Reset(std::vector<Entry> entries);
  // The same, reading the entries one at a time (next() returns false at the end).
  void Reset(const std::function<bool(Entry*)>& next);

  // The partners that get a view (at most kMaxViews; the rest get none).
  // Recomputes the per-view summaries when the set changes: O(records).
  void SetPartners(std::vector<std::string> partners);

  // The shared lock a reader holds while it uses views.
  std::shared_lock<std::shared_mutex> ReadLock() const { return std::shared_lock(mu_); }

  // A partner's set, read through the index. Valid while the index lives;
  // use only under ReadLock(), and only while the partner keeps its view.
  class View : public ReconcileSource {
   public:
    size_t size() const override;
    ItemKey item(size_t i) const override;
    size_t Find(const ItemKey& key) const override;
    ReconcileSummary Summarize(size_t begin, size_t end) const override;
    void Scan(size_t begin, size_t end, const std::function<bool(size_t, const ItemKey&)>& visit) const override;

   private:
    friend class ReconcileIndex;
    View(const ReconcileIndex* index, size_t slot) : index_(index), slot_(slot) {}
    const ReconcileIndex* index_;
    size_t slot_;
  };
  // The view of `partner`, or nullopt if it has none (not among
  // SetPartners', or beyond kMaxViews). Under ReadLock().
  std::optional<View> ViewFor(const std::string& partner) const;

  // Under ReadLock(): items of all audiences, and the index's own bytes (approximate).
  size_t items() const;
  size_t MemoryBytes() const;

 private:
  struct Node;
  struct Class {
    std::vector<std::string> orgs;  // sorted, unique, non-empty
    uint64_t views = 0;             // bit v: holds both self and the partner of view v
  };

  uint32_t Intern(std::vector<std::string> orgs);
  uint64_t ViewsOf(const std::vector<std::string>& orgs) const;
  void Build(std::vector<std::pair<ItemKey, uint32_t>> sorted);
  void Insert(const ItemKey& key, uint32_t cls);
  void Erase(const ItemKey& key);
  void Reclass(const ItemKey& key, uint32_t cls);
  // The leaf holding (or that would hold) `key`, with the path to it.
  Node* Descend(const ItemKey& key, std::vector<std::pair<Node*, size_t>>* path) const;
  void RemoveEmptyLeaf(Node* leaf, std::vector<std::pair<Node*, size_t>>& path);
  void RecomputeSummaries(Node* n);
  void MaybeCompact();

  // View queries (slot = the view's bit).
  size_t Count(size_t slot) const;
  size_t Rank(size_t slot, const ItemKey& key) const;
  // The leaf and position of the item of rank `r` in the view; r < Count(slot).
  std::pair<const Node*, size_t> Locate(size_t slot, size_t r) const;
  ReconcileSummary PrefixSummary(size_t slot, size_t r) const;

  const std::string self_;
  mutable std::shared_mutex mu_;
  std::unique_ptr<Node> root_;  // a leaf when small
  size_t items_ = 0;
  size_t leaves_ = 1;
  std::vector<Class> classes_;
  std::map<std::vector<std::string>, uint32_t> class_ids_;
  std::vector<std::string> partners_;  // view slot -> partner org
};

}  // namespace kring
