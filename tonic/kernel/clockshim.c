/* tonic's clock shim, preloaded into node by the criu engine (LD_PRELOAD).
 *
 * While the kernel waits at a pause (a blocking read(2) on fd 3, the command pipe),
 * tonic checkpoints the process; that takes tens of milliseconds that plain node would
 * never spend between two cells. The monotonic clocks node's timers run on would see
 * that time pass, and a setTimeout of 5 ms in one cell would fire before one of 1 ms
 * in the next. The shim stops the monotonic clocks for the whole process while it waits
 * there, and takes the time paused out of them for good afterwards. After a CRIU restore
 * (into a time namespace that resumes the clock where the dump left it) the same holds.
 *
 * It also marks fds 3 and 4 close-on-exec, so that the notebook's child processes do not
 * inherit tonic's channels. CLOCK_REALTIME (Date.now) is left alone.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CMD_FD 3
#define EVENTS_FD 4

static int64_t offset_ns;     /* time paused so far */
static int64_t paused_at_ns;  /* real monotonic time when the current pause began, or 0 */

static int64_t real_monotonic(void) {
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int is_monotonic(clockid_t id) {
    return id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE || id == CLOCK_MONOTONIC_RAW ||
           id == CLOCK_BOOTTIME;
}

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef ssize_t (*read_fn)(int, void *, size_t);

int clock_gettime(clockid_t id, struct timespec *ts) {
    static clock_gettime_fn real;
    if (!real) real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc != 0 || !is_monotonic(id)) return rc;
    int64_t shift = __atomic_load_n(&offset_ns, __ATOMIC_ACQUIRE);
    int64_t paused = __atomic_load_n(&paused_at_ns, __ATOMIC_ACQUIRE);
    int64_t now = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
    if (paused != 0 && now > paused) now = paused; /* frozen while paused */
    now -= shift;
    ts->tv_sec = now / 1000000000;
    ts->tv_nsec = now % 1000000000;
    return rc;
}

ssize_t read(int fd, void *buf, size_t count) {
    static read_fn real;
    if (!real) real = (read_fn)dlsym(RTLD_NEXT, "read");
    if (fd != CMD_FD) return real(fd, buf, count);
    int64_t began = real_monotonic();
    __atomic_store_n(&paused_at_ns, began, __ATOMIC_RELEASE);
    ssize_t n = real(fd, buf, count);
    int64_t ended = real_monotonic();
    if (ended > began) __atomic_add_fetch(&offset_ns, ended - began, __ATOMIC_ACQ_REL);
    __atomic_store_n(&paused_at_ns, 0, __ATOMIC_RELEASE);
    return n;
}

__attribute__((constructor)) static void tonic_clockshim_init(void) {
    fcntl(CMD_FD, F_SETFD, FD_CLOEXEC);
    fcntl(EVENTS_FD, F_SETFD, FD_CLOEXEC);
}
