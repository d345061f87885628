// The profile file: regular files only, an advisory lock, atomic replace
// that keeps the file's mode (see profile_file.hpp).
#include "tuner/profile_file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

namespace spattn::detail {
namespace {

namespace fs = std::filesystem;

// Profiles are small (about 1 KiB an entry): a larger file is not one.
constexpr int64_t kMaxProfileBytes = 16 << 20;

void write_all(int fd, const char* p, size_t n, const std::string& tmp) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) fail_file(tmp, std::string("cannot write: ") + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

fs::path parent_dir(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

std::string temp_prefix(const std::string& path) { return fs::path(path).filename().string() + ".tmp."; }

// Temp files of writers that died mid-save. Every writer creates its temp
// file only while holding the lock, so under the lock any left over is stale.
void remove_stale_temps(const std::string& path) {
  const std::string prefix = temp_prefix(path);
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(parent_dir(path), ec)) {
    const std::string name = de.path().filename().string();
    if (name.rfind(prefix, 0) == 0) {
      std::error_code rm;
      fs::remove(de.path(), rm);
    }
  }
}

// Test hook: SPATTN_PROFILE_TEST_SAVE_PAUSE_MS=N makes a save sleep N ms after
// writing half of its temp file (tests kill the writer there).
int test_pause_ms() {
  const char* v = std::getenv("SPATTN_PROFILE_TEST_SAVE_PAUSE_MS");
  return v ? std::atoi(v) : 0;
}

}  // namespace

// Reads a whole file; false if it does not exist, Error on any other failure.
bool read_file(const std::string& path, std::string& text) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    fail_file(path, std::string("cannot open: ") + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_file(path, "not a regular file (a profile is a YAML file; devices, FIFOs and folders are refused)");
  }
  if (st.st_size > kMaxProfileBytes) {
    ::close(fd);
    fail_file(path, "is " + std::to_string(st.st_size) + " bytes; a profile is at most " +
                        std::to_string(kMaxProfileBytes) + " bytes");
  }
  text.clear();
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail_file(path, std::string("cannot read: ") + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

// Refuses, before anything is written, a destination that is not a regular
// file or that this user may not write (a rename would replace a read-only
// file silently), and a folder it cannot create files in.
void check_writable_destination(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) fail_file(path, "not a regular file: refusing to replace it");
    // No write bit at all: the owner made it read-only (root's access() would
    // say yes anyway).
    if ((st.st_mode & 0222) == 0 || ::access(path.c_str(), W_OK) != 0)
      fail_file(path, "is read-only for this user: refusing to replace it (choose another --out, or make it writable)");
  }
  const fs::path dir = parent_dir(path);
  if (::stat(dir.c_str(), &st) == 0 && (!S_ISDIR(st.st_mode) || ::access(dir.c_str(), W_OK | X_OK) != 0))
    fail_file(path, "its folder " + in_quotes(dir.string()) + " is not a folder this user can write in");
}



FileLock::FileLock(const std::string& path) {
  std::error_code ec;
  fs::create_directories(parent_dir(path), ec);
  const std::string lock = path + ".lock";
  fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_file(path, "cannot open lock file " + in_quotes(lock) + ": " + std::strerror(errno));
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    const int err = errno;
    ::close(fd_);
    fail_file(path, "cannot lock " + in_quotes(lock) + ": " + std::strerror(err));
  }
}

FileLock::~FileLock() { ::close(fd_); }

// Call with the lock held: temp file in the same directory, fsync, rename
// over path, fsync the directory.
void write_atomically(const std::string& path, const std::string& text) {
  check_writable_destination(path);
  remove_stale_temps(path);
  // A file being replaced keeps its permission bits; a new one gets 0644.
  mode_t mode = 0644;
  if (struct stat st {}; ::stat(path.c_str(), &st) == 0) mode = st.st_mode & 07777;
  std::random_device rd;
  char rnd[17];
  std::snprintf(rnd, sizeof rnd, "%08x%08x", rd(), rd());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + rnd;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail_file(path, "cannot create temp file " + in_quotes(tmp) + ": " + std::strerror(errno));
  try {
    const size_t half = text.size() / 2;
    write_all(fd, text.data(), half, tmp);
    if (const int ms = test_pause_ms(); ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    write_all(fd, text.data() + half, text.size() - half, tmp);
    if (::fchmod(fd, mode) != 0) fail_file(tmp, std::string("cannot set its mode: ") + std::strerror(errno));
    if (::fsync(fd) != 0) fail_file(tmp, std::string("cannot fsync: ") + std::strerror(errno));
    if (::close(fd) != 0) fail_file(tmp, std::string("cannot close: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail_file(path, "cannot rename " + in_quotes(tmp) + " over it: " + std::strerror(err));
  }
  const int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);  // durability of the rename; best effort
    ::close(dfd);
  }
}

}  // namespace spattn::detail
