#include "common/file_stamp.hpp"

namespace dc {
namespace {

bool same_time(const timespec& a, const timespec& b)
{
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

} // namespace

FileStamp FileStamp::of(const struct stat& st)
{
  FileStamp s;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = static_cast<std::uint64_t>(st.st_size);
  s.nlink = st.st_nlink;
  s.mode = st.st_mode;
  s.mtime = st.st_mtim;
  s.ctime = st.st_ctim;
  return s;
}

bool FileStamp::operator==(const FileStamp& o) const
{
  return dev == o.dev && ino == o.ino && size == o.size && nlink == o.nlink && mode == o.mode &&
         same_time(mtime, o.mtime) && same_time(ctime, o.ctime);
}

bool earlier(const timespec& a, const timespec& b)
{
  return a.tv_sec != b.tv_sec ? a.tv_sec < b.tv_sec : a.tv_nsec < b.tv_nsec;
}

} // namespace dc
