// examples/ring: node i sends "Next to i is i+1" to node i+1 and prints what node i-1 sent it.
// The worker puts <distcomp/msg.hpp> on CPATH: `g++ -O2 -o ring ring.cpp` just works.
#include <distcomp/msg.hpp>
#include <iostream>
#include <string>

int main()
{
  try {
    distcomp::Msg msg;
    const int i = msg.node_id();
    const int n = msg.n_nodes();
    const int next = (i + 1) % n;
    msg.send(next, "Next to " + std::to_string(i) + " is " + std::to_string(next));
    std::cout << msg.recv((i - 1 + n) % n) << std::endl;
  } catch (const distcomp::MsgError& e) {
    std::cerr << "ring: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
