// End-to-end: --ignore patterns and .distcompignore files keep build outputs and .git at home.

#include "tests/support/processes.hpp"

#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace dc::test;

TEST_CASE("e2e: ignore: .distcompignore and --ignore leave entries out of the bundle")
{
  Cluster c(1);
  const std::string src = c.dir / "src";
  write_file(src + "/main.c", "int main;\n");
  write_file(src + "/main.o", "object\n");
  write_file(src + "/.git/HEAD", "ref\n");
  write_file(src + "/build/app", "binary\n");
  write_file(src + "/notes.tmp", "scratch\n");
  write_file(src + "/lib/keep.o", "kept\n");
  write_file(src + "/.distcompignore", ".git/\nbuild/\n*.o\n");
  write_file(src + "/lib/.distcompignore", "!keep.o\n");
  // A socket inside an ignored directory is not even looked at.
  const std::string sock = src + "/build/ctl.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(sock.size() < sizeof addr.sun_path);
  sock.copy(addr.sun_path, sock.size());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);

  const std::string label = c[0].address() + " | ";
  const MasterRun run = c.run({"--send", src + "/", "--ignore", "*.tmp", "--cmd",
                               "find . -path ./.tmp -prune -o "
                               "-type f -print | sort"});
  ::close(fd);
  INFO(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.stdout_lines() == std::vector<std::string>{label + "./.distcompignore",
                                                       label + "./lib/.distcompignore",
                                                       label + "./lib/keep.o", label + "./main.c"});
}

TEST_CASE("e2e: ignore: --ignore without --send or with an empty pattern is a usage error")
{
  Cluster c(1);
  MasterRun run = c.run({"--ignore", "*.o", "--cmd", "true"});
  CHECK(run.exit_code == 2);
  CHECK(run.err.find("--ignore only goes with --send") != std::string::npos);
  run = c.run({"--send", c.dir.path(), "--ignore", "", "--cmd", "true"});
  CHECK(run.exit_code == 2);
  CHECK(run.err.find("--ignore: empty pattern") != std::string::npos);
}
