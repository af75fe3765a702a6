// The shared reconciliation index: a B+-tree of item keys with per-view summaries in every node.
#include "protocol/reconcile_index.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <mutex>

namespace kring {

namespace {
// Below this many items a range's summary is added up item by item.
constexpr size_t kDirectSummaryItems = 32;
}  // namespace

struct ReconcileIndex::Node {
  bool leaf = true;
  std::vector<ReconcileSummary> sums;  // per view slot: the items below that are in the view
  // A leaf: its items in key order, and each one's audience class.
  std::vector<ItemKey> keys;
  std::vector<uint32_t> cls;
  Node* prev = nullptr;
  Node* next = nullptr;
  // An inner node: its children in key order; every item of kids[j] is at
  // or above lows[j] (j >= 1) and below lows[j + 1]. lows[0] is unused.
  std::vector<std::unique_ptr<Node>> kids;
  std::vector<ItemKey> lows;

  size_t size() const { return leaf ? keys.size() : kids.size(); }
};

namespace {

void AddMasked(std::vector<ReconcileSummary>& sums, uint64_t views, const Hash& id) {
  for (; views != 0; views &= views - 1) sums[static_cast<size_t>(std::countr_zero(views))].Add(id);
}

void RemoveMasked(std::vector<ReconcileSummary>& sums, uint64_t views, const Hash& id) {
  for (; views != 0; views &= views - 1) sums[static_cast<size_t>(std::countr_zero(views))].Remove(id);
}

}  // namespace

ReconcileIndex::ReconcileIndex(std::string self) : self_(std::move(self)), root_(std::make_unique<Node>()) {}

ReconcileIndex::~ReconcileIndex() = default;

// ---- classes and views ------------------------------------------------------------

uint64_t ReconcileIndex::ViewsOf(const std::vector<std::string>& orgs) const {
  if (!std::binary_search(orgs.begin(), orgs.end(), self_)) return 0;
  uint64_t views = 0;
  for (size_t v = 0; v < partners_.size(); ++v)
    if (std::binary_search(orgs.begin(), orgs.end(), partners_[v])) views |= uint64_t{1} << v;
  return views;
}

uint32_t ReconcileIndex::Intern(std::vector<std::string> orgs) {
  auto it = class_ids_.find(orgs);
  if (it != class_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(classes_.size());
  classes_.push_back(Class{orgs, ViewsOf(orgs)});
  class_ids_.emplace(std::move(orgs), id);
  return id;
}

void ReconcileIndex::SetPartners(std::vector<std::string> partners) {
  std::sort(partners.begin(), partners.end());
  partners.erase(std::unique(partners.begin(), partners.end()), partners.end());
  if (partners.size() > kMaxViews) partners.resize(kMaxViews);
  std::unique_lock lock(mu_);
  if (partners == partners_) return;
  partners_ = std::move(partners);
  for (Class& c : classes_) c.views = ViewsOf(c.orgs);
  RecomputeSummaries(root_.get());
}

void ReconcileIndex::RecomputeSummaries(Node* n) {
  n->sums.assign(partners_.size(), ReconcileSummary{});
  if (n->leaf) {
    for (size_t i = 0; i < n->keys.size(); ++i) AddMasked(n->sums, classes_[n->cls[i]].views, n->keys[i].id);
    return;
  }
  for (auto& kid : n->kids) {
    RecomputeSummaries(kid.get());
    for (size_t v = 0; v < n->sums.size(); ++v) n->sums[v].Add(kid->sums[v]);
  }
}

std::optional<ReconcileIndex::View> ReconcileIndex::ViewFor(const std::string& partner) const {
  auto it = std::lower_bound(partners_.begin(), partners_.end(), partner);
  if (it == partners_.end() || *it != partner) return std::nullopt;
  return View(this, static_cast<size_t>(it - partners_.begin()));
}

size_t ReconcileIndex::items() const { return items_; }

size_t ReconcileIndex::MemoryBytes() const {
  size_t bytes = sizeof(*this);
  std::vector<const Node*> stack{root_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    bytes += sizeof(Node) + n->sums.capacity() * sizeof(ReconcileSummary) + n->keys.capacity() * sizeof(ItemKey) +
             n->cls.capacity() * sizeof(uint32_t) + n->kids.capacity() * sizeof(void*) +
             n->lows.capacity() * sizeof(ItemKey);
    for (const auto& k : n->kids) stack.push_back(k.get());
  }
  for (const Class& c : classes_) {
    bytes += sizeof(Class) * 2;  // and its map entry
    for (const std::string& o : c.orgs) bytes += 2 * (sizeof(std::string) + o.size());
  }
  return bytes;
}

// ---- building -------------------------------------------------------------------------

void ReconcileIndex::Reset(std::vector<Entry> entries) {
  size_t i = 0;
  Reset([&](Entry* e) {
    if (i == entries.size()) return false;
    *e = std::move(entries[i++]);
    return true;
  });
}

void ReconcileIndex::Reset(const std::function<bool(Entry*)>& next) {
  std::unique_lock lock(mu_);
  classes_.clear();
  class_ids_.clear();
  std::vector<std::pair<ItemKey, uint32_t>> items;
  Entry e;
  while (next(&e)) {
    std::sort(e.audience.begin(), e.audience.end());
    e.audience.erase(std::unique(e.audience.begin(), e.audience.end()), e.audience.end());
    if (e.audience.empty()) continue;
    items.emplace_back(e.key, Intern(std::move(e.audience)));
    e.audience.clear();
  }
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  items.erase(std::unique(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first == b.first; }),
              items.end());
  Build(std::move(items));
}

// Full leaves and inner nodes: records arrive mostly in hlc order, so most
// later inserts append at the end, where a split leaves the left node full.
void ReconcileIndex::Build(std::vector<std::pair<ItemKey, uint32_t>> sorted) {
  items_ = sorted.size();
  std::vector<std::unique_ptr<Node>> level;
  for (size_t i = 0; i < sorted.size() || level.empty(); i += kLeafItems) {
    auto leaf = std::make_unique<Node>();
    size_t end = std::min(sorted.size(), i + kLeafItems);
    leaf->keys.reserve(kLeafItems + 1);
    leaf->cls.reserve(kLeafItems + 1);
    for (size_t j = i; j < end; ++j) {
      leaf->keys.push_back(sorted[j].first);
      leaf->cls.push_back(sorted[j].second);
    }
    if (!level.empty()) {
      level.back()->next = leaf.get();
      leaf->prev = level.back().get();
    }
    level.push_back(std::move(leaf));
  }
  std::vector<std::pair<ItemKey, uint32_t>>().swap(sorted);
  leaves_ = level.size();
  // The lowest key of each node of the level, for its parent's lows.
  std::vector<ItemKey> lows;
  for (const auto& n : level) lows.push_back(n->keys.empty() ? ItemKey{} : n->keys[0]);
  while (level.size() > 1) {
    std::vector<std::unique_ptr<Node>> up;
    std::vector<ItemKey> up_lows;
    for (size_t i = 0; i < level.size(); i += kInnerChildren) {
      auto inner = std::make_unique<Node>();
      inner->leaf = false;
      size_t end = std::min(level.size(), i + kInnerChildren);
      for (size_t j = i; j < end; ++j) {
        inner->kids.push_back(std::move(level[j]));
        inner->lows.push_back(lows[j]);
      }
      up_lows.push_back(lows[i]);
      up.push_back(std::move(inner));
    }
    level = std::move(up);
    lows = std::move(up_lows);
  }
  root_ = std::move(level[0]);
  RecomputeSummaries(root_.get());
}

void ReconcileIndex::MaybeCompact() {
  if (leaves_ <= 4 || items_ * 4 >= leaves_ * kLeafItems) return;
  std::vector<std::pair<ItemKey, uint32_t>> all;
  all.reserve(items_);
  const Node* n = root_.get();
  while (!n->leaf) n = n->kids[0].get();
  for (; n != nullptr; n = n->next)
    for (size_t i = 0; i < n->keys.size(); ++i) all.emplace_back(n->keys[i], n->cls[i]);
  Build(std::move(all));
}

// ---- changes ----------------------------------------------------------------------------

ReconcileIndex::Node* ReconcileIndex::Descend(const ItemKey& key, std::vector<std::pair<Node*, size_t>>* path) const {
  Node* n = root_.get();
  while (!n->leaf) {
    size_t j = static_cast<size_t>(std::upper_bound(n->lows.begin() + 1, n->lows.end(), key) - n->lows.begin()) - 1;
    path->emplace_back(n, j);
    n = n->kids[j].get();
  }
  return n;
}

void ReconcileIndex::Apply(const std::vector<RowChange>& changes) {
  std::unique_lock lock(mu_);
  std::vector<std::pair<Node*, size_t>> path;
  bool erased = false;
  for (size_t i = 0; i < changes.size();) {
    // The changes of one item, usually consecutive (all of a record's audience rows).
    const ItemKey& key = changes[i].key;
    path.clear();
    Node* leaf = Descend(key, &path);
    size_t p = static_cast<size_t>(std::lower_bound(leaf->keys.begin(), leaf->keys.end(), key) - leaf->keys.begin());
    bool present = p < leaf->keys.size() && leaf->keys[p] == key;
    std::vector<std::string> orgs;
    if (present) orgs = classes_[leaf->cls[p]].orgs;
    std::vector<std::string> before = orgs;
    for (; i < changes.size() && changes[i].key == key; ++i) {
      const std::string& org = changes[i].org;
      auto it = std::lower_bound(orgs.begin(), orgs.end(), org);
      bool has = it != orgs.end() && *it == org;
      if (changes[i].added && !has) orgs.insert(it, org);
      if (!changes[i].added && has) orgs.erase(it);
    }
    if (orgs == before) continue;
    if (orgs.empty()) {
      Erase(key);
      erased = true;
    } else if (!present) {
      Insert(key, Intern(std::move(orgs)));
    } else {
      Reclass(key, Intern(std::move(orgs)));
    }
  }
  if (erased) MaybeCompact();
}

void ReconcileIndex::Insert(const ItemKey& key, uint32_t cls) {
  std::vector<std::pair<Node*, size_t>> path;
  Node* leaf = Descend(key, &path);
  size_t p = static_cast<size_t>(std::lower_bound(leaf->keys.begin(), leaf->keys.end(), key) - leaf->keys.begin());
  assert(p == leaf->keys.size() || leaf->keys[p] != key);
  bool at_end = p == leaf->keys.size() && leaf->next == nullptr;
  leaf->keys.insert(leaf->keys.begin() + static_cast<ptrdiff_t>(p), key);
  leaf->cls.insert(leaf->cls.begin() + static_cast<ptrdiff_t>(p), cls);
  ++items_;
  uint64_t views = classes_[cls].views;
  AddMasked(leaf->sums, views, key.id);
  for (auto& [n, j] : path) AddMasked(n->sums, views, key.id);
  if (leaf->keys.size() <= kLeafItems) return;

  // Split: in the middle, or, appending at the very end, leave this leaf full.
  Node* left = leaf;
  size_t mid = at_end ? kLeafItems : left->keys.size() / 2;
  auto right = std::make_unique<Node>();
  right->keys.reserve(kLeafItems + 1);
  right->cls.reserve(kLeafItems + 1);
  right->keys.assign(left->keys.begin() + static_cast<ptrdiff_t>(mid), left->keys.end());
  right->cls.assign(left->cls.begin() + static_cast<ptrdiff_t>(mid), left->cls.end());
  left->keys.resize(mid);
  left->cls.resize(mid);
  right->next = left->next;
  right->prev = left;
  if (left->next) left->next->prev = right.get();
  left->next = right.get();
  RecomputeSummaries(left);
  RecomputeSummaries(right.get());
  ++leaves_;
  ItemKey low = right->keys[0];
  std::unique_ptr<Node> sibling = std::move(right);
  // Insert the new sibling into the parents, splitting full ones.
  while (true) {
    if (path.empty()) {
      auto root = std::make_unique<Node>();
      root->leaf = false;
      root->lows = {ItemKey{}, low};
      root->kids.push_back(std::move(root_));
      root->kids.push_back(std::move(sibling));
      root->sums.assign(partners_.size(), ReconcileSummary{});
      for (auto& kid : root->kids)
        for (size_t v = 0; v < root->sums.size(); ++v) root->sums[v].Add(kid->sums[v]);
      root_ = std::move(root);
      return;
    }
    auto [parent, j] = path.back();
    path.pop_back();
    parent->kids.insert(parent->kids.begin() + static_cast<ptrdiff_t>(j + 1), std::move(sibling));
    parent->lows.insert(parent->lows.begin() + static_cast<ptrdiff_t>(j + 1), low);
    if (parent->kids.size() <= kInnerChildren) return;
    size_t cut = at_end ? kInnerChildren : parent->kids.size() / 2;
    auto split = std::make_unique<Node>();
    split->leaf = false;
    for (size_t k = cut; k < parent->kids.size(); ++k) {
      split->kids.push_back(std::move(parent->kids[k]));
      split->lows.push_back(parent->lows[k]);
    }
    parent->kids.resize(cut);
    parent->lows.resize(cut);
    for (Node* n : {parent, split.get()}) {
      n->sums.assign(partners_.size(), ReconcileSummary{});
      for (auto& kid : n->kids)
        for (size_t v = 0; v < n->sums.size(); ++v) n->sums[v].Add(kid->sums[v]);
    }
    low = split->lows[0];
    sibling = std::move(split);
  }
}

void ReconcileIndex::Erase(const ItemKey& key) {
  std::vector<std::pair<Node*, size_t>> path;
  Node* leaf = Descend(key, &path);
  size_t p = static_cast<size_t>(std::lower_bound(leaf->keys.begin(), leaf->keys.end(), key) - leaf->keys.begin());
  if (p == leaf->keys.size() || leaf->keys[p] != key) return;
  uint64_t views = classes_[leaf->cls[p]].views;
  RemoveMasked(leaf->sums, views, key.id);
  for (auto& [n, j] : path) RemoveMasked(n->sums, views, key.id);
  leaf->keys.erase(leaf->keys.begin() + static_cast<ptrdiff_t>(p));
  leaf->cls.erase(leaf->cls.begin() + static_cast<ptrdiff_t>(p));
  --items_;
  if (leaf->keys.empty() && !path.empty()) RemoveEmptyLeaf(leaf, path);
}

void ReconcileIndex::RemoveEmptyLeaf(Node* leaf, std::vector<std::pair<Node*, size_t>>& path) {
  if (items_ == 0) {
    root_ = std::make_unique<Node>();
    RecomputeSummaries(root_.get());
    leaves_ = 1;
    return;
  }
  if (leaf->prev) leaf->prev->next = leaf->next;
  if (leaf->next) leaf->next->prev = leaf->prev;
  --leaves_;
  // Remove it, and any inner node that it leaves empty, from its parents.
  while (!path.empty()) {
    auto [parent, j] = path.back();
    path.pop_back();
    parent->kids.erase(parent->kids.begin() + static_cast<ptrdiff_t>(j));
    parent->lows.erase(parent->lows.begin() + static_cast<ptrdiff_t>(j));
    if (!parent->kids.empty()) break;
  }
  // A root with one child hands over to it.
  while (!root_->leaf && root_->kids.size() == 1) {
    std::unique_ptr<Node> only = std::move(root_->kids[0]);
    root_ = std::move(only);
  }
}

void ReconcileIndex::Reclass(const ItemKey& key, uint32_t cls) {
  std::vector<std::pair<Node*, size_t>> path;
  Node* leaf = Descend(key, &path);
  size_t p = static_cast<size_t>(std::lower_bound(leaf->keys.begin(), leaf->keys.end(), key) - leaf->keys.begin());
  if (p == leaf->keys.size() || leaf->keys[p] != key) return;
  uint64_t before = classes_[leaf->cls[p]].views, after = classes_[cls].views;
  leaf->cls[p] = cls;
  RemoveMasked(leaf->sums, before & ~after, key.id);
  AddMasked(leaf->sums, after & ~before, key.id);
  for (auto& [n, j] : path) {
    RemoveMasked(n->sums, before & ~after, key.id);
    AddMasked(n->sums, after & ~before, key.id);
  }
}

// ---- view queries -------------------------------------------------------------------------

size_t ReconcileIndex::Count(size_t slot) const { return root_->sums.empty() ? 0 : root_->sums[slot].count; }

size_t ReconcileIndex::Rank(size_t slot, const ItemKey& key) const {
  size_t rank = 0;
  const Node* n = root_.get();
  while (!n->leaf) {
    size_t j = static_cast<size_t>(std::upper_bound(n->lows.begin() + 1, n->lows.end(), key) - n->lows.begin()) - 1;
    for (size_t k = 0; k < j; ++k) rank += n->kids[k]->sums[slot].count;
    n = n->kids[j].get();
  }
  uint64_t bit = uint64_t{1} << slot;
  for (size_t i = 0; i < n->keys.size() && n->keys[i] < key; ++i) rank += (classes_[n->cls[i]].views & bit) != 0;
  return rank;
}

std::pair<const ReconcileIndex::Node*, size_t> ReconcileIndex::Locate(size_t slot, size_t r) const {
  const Node* n = root_.get();
  while (!n->leaf) {
    size_t k = 0;
    for (; k + 1 < n->kids.size(); ++k) {
      size_t c = n->kids[k]->sums[slot].count;
      if (r < c) break;
      r -= c;
    }
    n = n->kids[k].get();
  }
  uint64_t bit = uint64_t{1} << slot;
  for (size_t i = 0; i < n->keys.size(); ++i) {
    if ((classes_[n->cls[i]].views & bit) == 0) continue;
    if (r == 0) return {n, i};
    --r;
  }
  assert(false && "rank beyond the view");
  return {n, n->keys.size()};
}

ReconcileSummary ReconcileIndex::PrefixSummary(size_t slot, size_t r) const {
  ReconcileSummary acc;
  const Node* n = root_.get();
  while (r > 0 && !n->leaf) {
    const Node* down = nullptr;
    for (const auto& kid : n->kids) {
      const ReconcileSummary& s = kid->sums[slot];
      if (r < s.count) {
        down = kid.get();
        break;
      }
      acc.Add(s);
      r -= s.count;
      if (r == 0) break;
    }
    if (down == nullptr) return acc;
    n = down;
  }
  uint64_t bit = uint64_t{1} << slot;
  for (size_t i = 0; r > 0 && i < n->keys.size(); ++i) {
    if ((classes_[n->cls[i]].views & bit) == 0) continue;
    acc.Add(n->keys[i].id);
    --r;
  }
  return acc;
}

size_t ReconcileIndex::View::size() const { return index_->Count(slot_); }

ItemKey ReconcileIndex::View::item(size_t i) const {
  auto [leaf, p] = index_->Locate(slot_, i);
  return leaf->keys[p];
}

size_t ReconcileIndex::View::Find(const ItemKey& key) const { return index_->Rank(slot_, key); }

ReconcileSummary ReconcileIndex::View::Summarize(size_t begin, size_t end) const {
  if (end - begin <= kDirectSummaryItems) {
    ReconcileSummary s;
    Scan(begin, end, [&](size_t, const ItemKey& item) {
      s.Add(item.id);
      return true;
    });
    return s;
  }
  ReconcileSummary s = index_->PrefixSummary(slot_, end);
  s.Remove(index_->PrefixSummary(slot_, begin));
  return s;
}

void ReconcileIndex::View::Scan(size_t begin, size_t end,
                                const std::function<bool(size_t, const ItemKey&)>& visit) const {
  if (begin >= end) return;
  auto [leaf, p] = index_->Locate(slot_, begin);
  uint64_t bit = uint64_t{1} << slot_;
  for (size_t rank = begin; rank < end && leaf != nullptr;) {
    if (p == leaf->keys.size()) {
      leaf = leaf->next;
      p = 0;
      continue;
    }
    if (index_->classes_[leaf->cls[p]].views & bit) {
      if (!visit(rank, leaf->keys[p])) return;
      ++rank;
    }
    ++p;
  }
}

}  // namespace kring
