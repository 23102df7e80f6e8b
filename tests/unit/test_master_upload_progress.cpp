#include "master/upload_progress.hpp"

#include <doctest/doctest.h>

using dc::master::UploadProgress;

TEST_CASE("upload progress: the bar shows bytes, rate, ETA and nodes done")
{
  CHECK(UploadProgress::render(0, 0, 0, 0, 8) ==
        "upload [                    ]  0 B / 0 B  0/8 nodes");
  CHECK(UploadProgress::render(48'000'000, 96'000'000, 12'000'000, 3, 8) ==
        "upload [##########          ]  48 MB / 96 MB  12 MB/s  ETA 4.00 s  3/8 nodes");
  CHECK(UploadProgress::render(96'000'000, 96'000'000, 12'000'000, 8, 8) ==
        "upload [####################]  96 MB / 96 MB  12 MB/s  8/8 nodes");
  // More credited than wanted (rounding) never overflows the bar.
  CHECK(UploadProgress::render(200, 100, 0, 1, 1) ==
        "upload [####################]  100 B / 100 B  1/1 nodes");
}
