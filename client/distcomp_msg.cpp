// distcomp-msg: node-to-node messages from shell scripts run by distcomp.
#include <cstdio>
#include <cstring>
#include <distcomp/msg.hpp>
#include <iostream>
#include <iterator>
#include <string>

namespace {

constexpr const char* k_usage =
    "usage: distcomp-msg send DST [TEXT]     send TEXT (or stdin) to node DST\n"
    "       distcomp-msg recv SRC            print the next message from node SRC\n"
    "       distcomp-msg recv-any            print the source node, a tab, then the message\n"
    "       distcomp-msg barrier             wait until every node reached the barrier\n"
    "       distcomp-msg broadcast ROOT [TEXT]  ROOT sends TEXT (or stdin), all print it\n"
    "       distcomp-msg rank | size         print this node's id / the number of nodes\n";

int usage_error(const std::string& what)
{
  std::fprintf(stderr, "distcomp-msg: error: %s\n%s", what.c_str(), k_usage);
  return 2;
}

bool parse_node(const char* text, int& node)
{
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 1000000) {
    return false;
  }
  node = int(v);
  return true;
}

std::string read_stdin()
{
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

void write_out(const std::string& data)
{
  std::fwrite(data.data(), 1, data.size(), stdout);
  std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv)
{
  if (argc < 2) {
    return usage_error("no command");
  }
  const std::string cmd = argv[1];
  const bool takes_node = cmd == "send" || cmd == "recv" || cmd == "broadcast";
  const int max_args = cmd == "send" || cmd == "broadcast" ? 4 : takes_node ? 3 : 2;
  if (cmd == "-h" || cmd == "--help") {
    std::fputs(k_usage, stdout);
    return 0;
  }
  if (cmd != "send" && cmd != "recv" && cmd != "recv-any" && cmd != "barrier" &&
      cmd != "broadcast" && cmd != "rank" && cmd != "size") {
    return usage_error("unknown command '" + cmd + "'");
  }
  if (argc > max_args || (takes_node && argc < 3)) {
    return usage_error(takes_node ? "'" + cmd + "' takes a node number" +
                                        (max_args == 4 ? " and an optional text" : "")
                                  : "'" + cmd + "' takes no arguments");
  }
  int node = 0;
  if (takes_node && !parse_node(argv[2], node)) {
    return usage_error(std::string("not a node number: '") + argv[2] + "'");
  }
  try {
    distcomp::Msg msg;
    if (cmd == "send") {
      msg.send(node, argc == 4 ? std::string(argv[3]) : read_stdin());
    } else if (cmd == "recv") {
      write_out(msg.recv(node));
    } else if (cmd == "recv-any") {
      auto [from, data] = msg.recv_any();
      write_out(std::to_string(from) + "\t" + data);
    } else if (cmd == "barrier") {
      msg.barrier();
    } else if (cmd == "broadcast") {
      std::string data;
      if (msg.node_id() == node) {
        data = argc == 4 ? std::string(argv[3]) : read_stdin();
      }
      write_out(msg.broadcast(node, data));
    } else if (cmd == "rank") {
      write_out(std::to_string(msg.node_id()) + "\n");
    } else {
      write_out(std::to_string(msg.n_nodes()) + "\n");
    }
  } catch (const distcomp::MsgError& e) {
    std::fprintf(stderr, "distcomp-msg: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
