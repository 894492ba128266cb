/* Prints, as JSON, every struct size, field offset and constant that
 * native/ hard-codes, taken from the system headers. test/native/abi.test.ts
 * compares them with the TypeScript values. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <poll.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#define F(name, v) printf("  \"%s\": %llu,\n", name, (unsigned long long)(v))

int main(void) {
  printf("{\n");
  F("UFFDIO_API", UFFDIO_API);
  F("UFFDIO_REGISTER", UFFDIO_REGISTER);
  F("UFFDIO_UNREGISTER", UFFDIO_UNREGISTER);
  F("UFFDIO_WAKE", UFFDIO_WAKE);
  F("UFFDIO_COPY", UFFDIO_COPY);
  F("UFFDIO_ZEROPAGE", UFFDIO_ZEROPAGE);
  F("USERFAULTFD_IOC_NEW", USERFAULTFD_IOC_NEW);
  F("UFFD_API", UFFD_API);
  F("UFFD_EVENT_PAGEFAULT", UFFD_EVENT_PAGEFAULT);
  F("UFFD_EVENT_FORK", UFFD_EVENT_FORK);
  F("UFFD_EVENT_REMAP", UFFD_EVENT_REMAP);
  F("UFFD_EVENT_REMOVE", UFFD_EVENT_REMOVE);
  F("UFFD_EVENT_UNMAP", UFFD_EVENT_UNMAP);
  F("UFFD_PAGEFAULT_FLAG_WRITE", UFFD_PAGEFAULT_FLAG_WRITE);
  F("UFFD_PAGEFAULT_FLAG_WP", UFFD_PAGEFAULT_FLAG_WP);
  F("UFFD_PAGEFAULT_FLAG_MINOR", UFFD_PAGEFAULT_FLAG_MINOR);
  F("UFFD_FEATURE_EVENT_REMOVE", UFFD_FEATURE_EVENT_REMOVE);
  F("UFFD_FEATURE_MISSING_HUGETLBFS", UFFD_FEATURE_MISSING_HUGETLBFS);
  F("UFFD_FEATURE_EVENT_UNMAP", UFFD_FEATURE_EVENT_UNMAP);
  F("UFFD_FEATURE_THREAD_ID", UFFD_FEATURE_THREAD_ID);
  F("UFFDIO_REGISTER_MODE_MISSING", UFFDIO_REGISTER_MODE_MISSING);
  F("UFFDIO_COPY_MODE_DONTWAKE", UFFDIO_COPY_MODE_DONTWAKE);
  F("UFFDIO_ZEROPAGE_MODE_DONTWAKE", UFFDIO_ZEROPAGE_MODE_DONTWAKE);
  F("UFFD_USER_MODE_ONLY", UFFD_USER_MODE_ONLY);

  F("uffd_msg.size", sizeof(struct uffd_msg));
  F("uffd_msg.event", offsetof(struct uffd_msg, event));
  F("uffd_msg.pagefault_flags", offsetof(struct uffd_msg, arg.pagefault.flags));
  F("uffd_msg.pagefault_address", offsetof(struct uffd_msg, arg.pagefault.address));
  F("uffd_msg.pagefault_ptid", offsetof(struct uffd_msg, arg.pagefault.feat.ptid));
  F("uffd_msg.remove_start", offsetof(struct uffd_msg, arg.remove.start));
  F("uffd_msg.remove_end", offsetof(struct uffd_msg, arg.remove.end));
  F("uffdio_api.size", sizeof(struct uffdio_api));
  F("uffdio_api.api", offsetof(struct uffdio_api, api));
  F("uffdio_api.features", offsetof(struct uffdio_api, features));
  F("uffdio_api.ioctls", offsetof(struct uffdio_api, ioctls));
  F("uffdio_range.size", sizeof(struct uffdio_range));
  F("uffdio_range.start", offsetof(struct uffdio_range, start));
  F("uffdio_range.len", offsetof(struct uffdio_range, len));
  F("uffdio_register.size", sizeof(struct uffdio_register));
  F("uffdio_register.range", offsetof(struct uffdio_register, range));
  F("uffdio_register.mode", offsetof(struct uffdio_register, mode));
  F("uffdio_register.ioctls", offsetof(struct uffdio_register, ioctls));
  F("uffdio_copy.size", sizeof(struct uffdio_copy));
  F("uffdio_copy.dst", offsetof(struct uffdio_copy, dst));
  F("uffdio_copy.src", offsetof(struct uffdio_copy, src));
  F("uffdio_copy.len", offsetof(struct uffdio_copy, len));
  F("uffdio_copy.mode", offsetof(struct uffdio_copy, mode));
  F("uffdio_copy.copy", offsetof(struct uffdio_copy, copy));
  F("uffdio_zeropage.size", sizeof(struct uffdio_zeropage));
  F("uffdio_zeropage.range", offsetof(struct uffdio_zeropage, range));
  F("uffdio_zeropage.mode", offsetof(struct uffdio_zeropage, mode));
  F("uffdio_zeropage.zeropage", offsetof(struct uffdio_zeropage, zeropage));

  F("sockaddr_un.size", sizeof(struct sockaddr_un));
  F("sockaddr_un.sun_family", offsetof(struct sockaddr_un, sun_family));
  F("sockaddr_un.sun_path", offsetof(struct sockaddr_un, sun_path));
  F("sockaddr_un.path_max", sizeof(((struct sockaddr_un *)0)->sun_path));
  F("msghdr.size", sizeof(struct msghdr));
  F("msghdr.msg_name", offsetof(struct msghdr, msg_name));
  F("msghdr.msg_namelen", offsetof(struct msghdr, msg_namelen));
  F("msghdr.msg_iov", offsetof(struct msghdr, msg_iov));
  F("msghdr.msg_iovlen", offsetof(struct msghdr, msg_iovlen));
  F("msghdr.msg_control", offsetof(struct msghdr, msg_control));
  F("msghdr.msg_controllen", offsetof(struct msghdr, msg_controllen));
  F("msghdr.msg_flags", offsetof(struct msghdr, msg_flags));
  F("iovec.size", sizeof(struct iovec));
  F("iovec.iov_base", offsetof(struct iovec, iov_base));
  F("iovec.iov_len", offsetof(struct iovec, iov_len));
  F("cmsghdr.size", sizeof(struct cmsghdr));
  F("cmsghdr.cmsg_len", offsetof(struct cmsghdr, cmsg_len));
  F("cmsghdr.cmsg_level", offsetof(struct cmsghdr, cmsg_level));
  F("cmsghdr.cmsg_type", offsetof(struct cmsghdr, cmsg_type));
  F("cmsghdr.data", CMSG_LEN(0));
  F("ucred.size", sizeof(struct ucred));
  F("ucred.pid", offsetof(struct ucred, pid));
  F("ucred.uid", offsetof(struct ucred, uid));
  F("ucred.gid", offsetof(struct ucred, gid));
  F("AF_UNIX", AF_UNIX);
  F("SOCK_STREAM", SOCK_STREAM);
  F("SOCK_NONBLOCK", SOCK_NONBLOCK);
  F("SOCK_CLOEXEC", SOCK_CLOEXEC);
  F("SOL_SOCKET", SOL_SOCKET);
  F("SCM_RIGHTS", SCM_RIGHTS);
  F("SO_PEERCRED", SO_PEERCRED);
  F("MSG_PEEK", MSG_PEEK);
  F("MSG_DONTWAIT", MSG_DONTWAIT);
  F("MSG_CTRUNC", MSG_CTRUNC);
  F("MSG_CMSG_CLOEXEC", MSG_CMSG_CLOEXEC);

  F("pollfd.size", sizeof(struct pollfd));
  F("epoll_event.size", sizeof(struct epoll_event));
  F("epoll_event.events", offsetof(struct epoll_event, events));
  F("epoll_event.data", offsetof(struct epoll_event, data));
  F("EPOLLIN", EPOLLIN);
  F("EPOLLERR", EPOLLERR);
  F("EPOLLHUP", EPOLLHUP);
  F("EPOLLRDHUP", EPOLLRDHUP);
  F("EPOLL_CTL_ADD", EPOLL_CTL_ADD);
  F("EPOLL_CTL_DEL", EPOLL_CTL_DEL);
  F("EPOLL_CLOEXEC", EPOLL_CLOEXEC);
  F("POLLIN", POLLIN);
  F("POLLPRI", POLLPRI);
  F("POLLOUT", POLLOUT);
  F("POLLERR", POLLERR);
  F("POLLHUP", POLLHUP);
  F("POLLNVAL", POLLNVAL);
  F("POLLRDHUP", POLLRDHUP);
  F("EFD_NONBLOCK", EFD_NONBLOCK);
  F("EFD_CLOEXEC", EFD_CLOEXEC);
  F("O_NONBLOCK", O_NONBLOCK);
  F("O_RDONLY", O_RDONLY);
  F("O_CLOEXEC", O_CLOEXEC);
  F("O_CLOEXEC", O_CLOEXEC);
  F("F_GETFL", F_GETFL);
  F("F_DUPFD_CLOEXEC", F_DUPFD_CLOEXEC);
  F("SEEK_DATA", SEEK_DATA);
  F("SEEK_HOLE", SEEK_HOLE);
  F("SCHED_IDLE", SCHED_IDLE);
  F("SCHED_BATCH", SCHED_BATCH);
  F("PROT_READ", PROT_READ);
  F("PROT_WRITE", PROT_WRITE);
  F("MAP_SHARED", MAP_SHARED);
  F("MAP_PRIVATE", MAP_PRIVATE);
  F("MAP_ANONYMOUS", MAP_ANONYMOUS);
  F("MAP_NORESERVE", MAP_NORESERVE);
  F("MAP_POPULATE", MAP_POPULATE);
  F("MAP_HUGETLB", MAP_HUGETLB);
  F("MADV_DONTNEED", MADV_DONTNEED);
  F("MADV_RANDOM", MADV_RANDOM);
  F("MADV_SEQUENTIAL", MADV_SEQUENTIAL);
  F("MADV_WILLNEED", MADV_WILLNEED);
  F("MADV_POPULATE_READ", MADV_POPULATE_READ);
  F("SYS_pidfd_open", SYS_pidfd_open);
  F("SYS_pidfd_send_signal", SYS_pidfd_send_signal);
  F("SYS_pidfd_getfd", SYS_pidfd_getfd);
  F("PIDFD_NONBLOCK", O_NONBLOCK);
  F("SIGKILL", SIGKILL);
  F("SIGTERM", SIGTERM);
  F("SIGUSR2", SIGUSR2);
  printf("  \"end\": 0\n}\n");
  return 0;
}
