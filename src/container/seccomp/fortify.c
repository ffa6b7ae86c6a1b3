/*
 * glibc's fortified fprintf, for the musl build.
 *
 * sibling links Debian's libseccomp.a, which was compiled against glibc with
 * _FORTIFY_SOURCE=2: its one glibc-only reference is __fprintf_chk (in seccomp_export_pfc,
 * the filter's human-readable dump). musl has no fortified variants; this one checks what
 * glibc's checks for fprintf (nothing beyond the format, with flag > 0 refusing %n, which
 * libseccomp never writes) and prints through vfprintf. Built by build.rs for musl targets
 * only. No headers but the compiler's own <stdarg.h>: it is compiled by the host's C
 * compiler, whose libc headers are glibc's.
 */
#include <stdarg.h>

struct _IO_FILE;
int vfprintf(struct _IO_FILE *stream, const char *format, va_list ap);

int __fprintf_chk(struct _IO_FILE *stream, int flag, const char *format, ...)
{
    va_list ap;
    int written;

    (void)flag;
    va_start(ap, format);
    written = vfprintf(stream, format, ap);
    va_end(ap);
    return written;
}
