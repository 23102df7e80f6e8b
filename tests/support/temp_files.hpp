#pragma once
// Temporary directories and small files for tests. Kept apart from processes.hpp so the unit
// tests can compile it in without the process helpers (and their build in the sanitizer run).

#include <string>
#include <vector>

namespace dc::test {

// A fresh directory under $TMPDIR (or /tmp), removed by the destructor unless the
// DC_KEEP_TEST_DIRS environment variable is set.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return m_path; }
  std::string operator/(const std::string& name) const { return m_path + "/" + name; }

private:
  std::string m_path;
};

void write_file(const std::string& path, const std::string& content, int mode = 0644);
std::string read_file(const std::string& path);
bool exists(const std::string& path);

// The job dirs (`job-*`, full paths) in a worker's base dir that hold anything. The spare a
// worker keeps ready for its next job (nothing in it but an empty .tmp) is not a job's leftover.
std::vector<std::string> used_job_dirs(const std::string& workdir);

} // namespace dc::test
