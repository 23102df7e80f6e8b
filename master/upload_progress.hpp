#pragma once
// The upload progress bar: one line on stderr while bundles travel, with the bytes sent of the
// bytes the workers wanted (uncompressed sizes, across nodes), the rate, an ETA and how many nodes
// finished their upload. Drawn through the Printer, which clears it before any other output, at
// most every 200 ms; cleared for good once every node is done. Used only when stderr is a terminal
// (or with --progress); quiet in pipes and CI.

#include "common/async.hpp"

#include <cstdint>
#include <string>

namespace dc::master {

class Printer;

class UploadProgress {
public:
  UploadProgress(Printer& printer, std::size_t nodes);
  // A node's WANT arrived: `bytes` more to send.
  void wanted(std::uint64_t bytes);
  // `bytes` more of the wanted content went out (a slice of a blob, pro rata).
  void sent(std::uint64_t bytes);
  // A node's upload ended, whatever the outcome (also nodes that had nothing to upload).
  void node_done();
  // Removes the bar (end of run). Idempotent.
  void finish();

  // "upload [########            ]  45 MB / 96 MB  12 MB/s  ETA 4 s  3/8 nodes"; rate in bytes/s
  // (0: unknown, no ETA).
  static std::string render(std::uint64_t done, std::uint64_t total, double rate,
                            std::size_t nodes_done, std::size_t nodes);

private:
  void draw(bool force);

  Printer& m_printer;
  std::size_t m_nodes;
  std::size_t m_nodes_done = 0;
  std::uint64_t m_total = 0;
  std::uint64_t m_done = 0;
  Clock::time_point m_started = Clock::now();
  Clock::time_point m_last_draw{};
  bool m_finished = false;
};

} // namespace dc::master
