// H2Guard's check of a whole header block (HEADERS and its CONTINUATIONs):
// an HPACK read that keeps no table, only sizes, bounding what the block
// decodes to (RFC 7541).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "service/front/h2_guard.h"  // IWYU pragma: associated

namespace egress {
namespace {

// RFC 7541: each entry counts 32 bytes above its name and value.
constexpr size_t kEntryOverhead = 32;
// The largest static table entry (name + value + 32) is under this.
constexpr size_t kStaticEntryBound = 100;
constexpr uint32_t kStaticEntries = 61;
// A Huffman-coded string decodes to at most 8/5 of its length (5-bit codes
// are the shortest).
size_t DecodedBound(size_t coded, bool huffman) {
  return huffman ? coded * 8 / 5 + 1 : coded;
}

// Reads HPACK integers and strings from a whole header block.
class BlockReader {
 public:
  explicit BlockReader(absl::string_view block) : rest_(block) {}
  bool empty() const { return rest_.empty(); }
  uint8_t Peek() const { return static_cast<uint8_t>(rest_[0]); }

  // RFC 7541 5.1, with at most 4 continuation bytes (values under 2^28).
  bool Integer(int prefix_bits, uint64_t& value) {
    if (rest_.empty()) return false;
    const uint64_t max_prefix = (uint64_t{1} << prefix_bits) - 1;
    value = static_cast<uint8_t>(rest_[0]) & max_prefix;
    rest_.remove_prefix(1);
    if (value < max_prefix) return true;
    for (int shift = 0; shift <= 21; shift += 7) {
      if (rest_.empty()) return false;
      const uint8_t byte = static_cast<uint8_t>(rest_[0]);
      rest_.remove_prefix(1);
      value += static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;  // a fifth continuation byte: padded or too large
  }

  // A string literal; `bound` is its decoded length at most.
  bool String(size_t& bound) {
    if (rest_.empty()) return false;
    const bool huffman = (Peek() & 0x80) != 0;
    uint64_t length = 0;
    if (!Integer(7, length) || length > rest_.size()) return false;
    rest_.remove_prefix(length);
    bound = DecodedBound(length, huffman);
    return true;
  }

 private:
  absl::string_view rest_;
};

}  // namespace

bool H2Guard::CheckHeaderBlock() {
  BlockReader reader(block_);
  size_t decoded = 0;
  const auto malformed = [this](absl::string_view what) {
    return Refuse(ConnectionRefusal::kMalformed,
                  absl::StrCat("malformed HPACK header block: ", what));
  };
  // An entry's size as far as the mirror knows it, else the whole table.
  const auto entry_bound = [this](uint64_t index) -> size_t {
    if (index <= kStaticEntries) return kStaticEntryBound;
    const uint64_t dynamic = index - kStaticEntries - 1;
    if (dynamic < table_.size()) return table_[dynamic];
    return std::max<size_t>(table_capacity_, kEntryOverhead);
  };
  while (!reader.empty()) {
    const uint8_t first = reader.Peek();
    uint64_t index = 0;
    size_t name = 0;
    size_t value = 0;
    if ((first & 0x80) != 0) {  // indexed field
      if (!reader.Integer(7, index)) return malformed("integer");
      if (index == 0) return malformed("index 0");
      decoded += entry_bound(index);
    } else if ((first & 0xe0) == 0x20) {  // dynamic table size update
      uint64_t size = 0;
      if (!reader.Integer(5, size)) return malformed("integer");
      if (size > limits_.header_table_size) {
        return malformed("table size over the server's setting");
      }
      table_capacity_ = size;
      while (table_bytes_ > table_capacity_) {
        table_bytes_ -= table_.back();
        table_.pop_back();
      }
    } else {
      // Literal: with incremental indexing (01), without (0000) or never
      // indexed (0001); a name by index or new.
      const bool indexing = (first & 0xc0) == 0x40;
      if (!reader.Integer(indexing ? 6 : 4, index)) return malformed("integer");
      if (index == 0) {
        if (!reader.String(name)) return malformed("string");
      } else {
        name = entry_bound(index);
      }
      if (!reader.String(value)) return malformed("string");
      const size_t entry = name + value + kEntryOverhead;
      decoded += entry;
      if (indexing) {
        if (entry > table_capacity_) {
          table_.clear();
          table_bytes_ = 0;
        } else {
          table_.push_front(entry);
          table_bytes_ += entry;
          while (table_bytes_ > table_capacity_) {
            table_bytes_ -= table_.back();
            table_.pop_back();
          }
        }
      }
    }
    if (decoded > limits_.max_header_block_bytes) {
      return Refuse(ConnectionRefusal::kHeaderBlock,
                    absl::StrCat("a header block decoding to over ",
                                 limits_.max_header_block_bytes, " bytes"));
    }
  }
  block_.clear();
  return true;
}

}  // namespace egress
