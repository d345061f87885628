#pragma once
// What the three parts of the profile code share (internal to tuner/):
// profile_schema.cpp reads and writes the YAML, profile_file.cpp owns the
// file (regular files only, lock, atomic replace), profile.cpp merges and
// looks up entries.
#include <string>

#include "spattn/error.hpp"

namespace spattn::detail {

inline std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

[[noreturn]] inline void fail_file(const std::string& file, const std::string& why) {
  throw Error("spattn: profile " + in_quotes(file) + ": " + why);
}

// Reads a whole regular file (at most 16 MiB); false if it does not exist,
// Error on anything else (a FIFO, a device, a folder, a read error).
bool read_file(const std::string& path, std::string& text);
// Refuses, before anything is written, a destination that is not a regular
// file or that this user may not write, and a folder it cannot create files in.
void check_writable_destination(const std::string& path);
// Call with the lock held: temp file in the same folder, fsync, rename over
// path; the mode of a replaced file is kept.
void write_atomically(const std::string& path, const std::string& text);

// Advisory lock on "<path>.lock" (flock; released when closed or the process dies).
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace spattn::detail
