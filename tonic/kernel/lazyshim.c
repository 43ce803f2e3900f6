/* tonic's fix for CRIU's lazy-pages daemon, preloaded into it (LD_PRELOAD) by the criu
 * engine (engines/criu/lazy.py); never into node.
 *
 * The daemon serves a restored tree's memory over userfaultfd. When the tree discards
 * memory (madvise MADV_DONTNEED: V8 and glibc do it as they free pages, most of all at
 * node's exit), the kernel tells the daemon with a REMOVE event, and the daemon stops
 * serving that range: UFFDIO_UNREGISTER. The tree only waits until the event is read, so
 * it may already have unmapped the range (munmap, at once after madvise) when the daemon
 * unregisters it: the kernel then finds no mapping there and says EINVAL, and CRIU (4.1,
 * uffd.c's handle_remove; still so upstream) takes that for a failure and exits. Every
 * page it had not copied in yet then reads as zeros in the tree: node died of SIGSEGV at
 * its exit (once it had exited while its pages were still coming in, in 4 runs out of 4).
 *
 * An EINVAL from UFFDIO_UNREGISTER means that no mapping of the range is registered
 * with this userfaultfd any more (gone, or replaced by one that cannot be registered):
 * there is nothing left to unregister, which is what the daemon asked for. The shim says
 * so (0), and the daemon goes on as it does after an unregister: it drops the range from
 * what it still has to copy (the tree's discarded pages read as zeros, as they should).
 * Every other call is the plain system call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int ioctl(int fd, unsigned long request, ...)
{
	va_list args;
	va_start(args, request);
	void *arg = va_arg(args, void *);
	va_end(args);
	long ret = syscall(SYS_ioctl, fd, request, arg);
	if (ret == -1 && errno == EINVAL && request == UFFDIO_UNREGISTER)
		return 0;
	return (int)ret;
}
