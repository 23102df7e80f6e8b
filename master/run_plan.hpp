#pragma once
// What every node session of one run shares, read-only: options, peers, key, bundle, job id.

#include "common/bundle_source.hpp"
#include "common/key_file.hpp"
#include "common/peers.hpp"
#include "master/options.hpp"
#include "master/upload_progress.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dc::master {

class BundleScan;

struct RunPlan {
  const Options& options;
  std::vector<Peer> peers;
  const ClusterKey& key;
  std::unique_ptr<BundleSource> bundle;   // null without --send, and until the scan is done
  std::unique_ptr<BlobCompressor> blobs;  // compresses each blob once for every node
  BundleScan* scan = nullptr;             // with --send: sets bundle and blobs when done
  std::string job_id;                     // DISTCOMP_JOB_ID, random per run
  std::optional<std::string> stdin_bytes; // --stdin: given to every command
  UploadProgress* progress = nullptr;     // the progress bar, when shown
};

} // namespace dc::master
