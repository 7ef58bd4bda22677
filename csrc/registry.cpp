#include "conv_launch.h"
#include "direct_launch.h"

namespace convt3d {

namespace {
// Kernel TUs register from their own static initialisers, whose order across TUs is
// unspecified: hence function-local statics.
template <typename Entry>
const Entry* find_by_name(const std::vector<Entry>& entries, const std::string& name) {
  for (const auto& e : entries) {
    if (name == e.name) return &e;
  }
  return nullptr;
}
}  // namespace

std::vector<KernelEntry>& registry() {
  static std::vector<KernelEntry> entries;
  return entries;
}

std::vector<DirectEntry>& direct_registry() {
  static std::vector<DirectEntry> entries;
  return entries;
}

std::vector<DirectWgradEntry>& direct_wgrad_registry() {
  static std::vector<DirectWgradEntry> entries;
  return entries;
}

const KernelEntry* find_kernel(const std::string& name) { return find_by_name(registry(), name); }
const DirectEntry* find_direct(const std::string& name) { return find_by_name(direct_registry(), name); }
const DirectWgradEntry* find_direct_wgrad(const std::string& name) {
  return find_by_name(direct_wgrad_registry(), name);
}

const char* status_name(int code) {
  // Mirrors cutlass::Status (cutlass/cutlass.h) without pulling CUTLASS into the binding.
  switch (code) {
    case 0: return "kSuccess";
    case 1: return "kErrorMisalignedOperand";
    case 2: return "kErrorInvalidDataType";
    case 3: return "kErrorInvalidLayout";
    case 4: return "kErrorInvalidProblem";
    case 5: return "kErrorNotSupported";
    case 6: return "kErrorWorkspaceNull";
    case 7: return "kErrorInternal";
    case 8: return "kErrorArchMismatch";
    case 9: return "kErrorInsufficientDriver";
    case 10: return "kErrorMemoryAllocation";
    case 11: return "kInvalid";
    default: return code >= 1000 ? "cudaError" : "unknown";
  }
}

}  // namespace convt3d
