// examples/hello: every node compiles this and prints who it is and what it was sent.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <unistd.h>

int main()
{
  const char* id = std::getenv("DISTCOMP_NODE_ID");
  const char* n = std::getenv("DISTCOMP_N_NODES");
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::ifstream data("data/greeting.txt");
  std::string greeting;
  std::getline(data, greeting);
  long sum = 0;
  for (long i = 1; i <= 1000000; ++i) {
    sum += i % 7;
  }
  std::cout << greeting << " from node " << (id ? id : "?") << " of " << (n ? n : "?") << " on "
            << host << " (checksum " << sum << ")\n";
  return 0;
}
