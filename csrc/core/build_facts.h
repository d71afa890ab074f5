// Facts about this build that hipgrad.build_info() reports: backends, vendor libraries and their
// versions, the CPU instruction set picked at run time. Each backend adds its own at load time.
#pragma once
#include <map>
#include <string>

namespace hg {

std::map<std::string, std::string>& build_facts();
inline bool add_build_fact(const std::string& key, const std::string& value) {
  build_facts()[key] = value;
  return true;
}

}  // namespace hg
