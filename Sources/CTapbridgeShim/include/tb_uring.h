// io_uring pieces liburing 2.3 lacks or exposes only as macros.
#pragma once
#include <liburing.h>

#ifndef IORING_OP_READ_MULTISHOT
#define IORING_OP_READ_MULTISHOT 49   /* kernel 6.7 */
#endif

static inline unsigned char tb_IOSQE_FIXED_FILE(void) { return IOSQE_FIXED_FILE; }
static inline unsigned char tb_IOSQE_IO_LINK(void) { return IOSQE_IO_LINK; }
static inline unsigned char tb_IOSQE_BUFFER_SELECT(void) { return IOSQE_BUFFER_SELECT; }
static inline unsigned char tb_IOSQE_CQE_SKIP_SUCCESS(void) { return IOSQE_CQE_SKIP_SUCCESS; }

/// Multishot read into buffers picked from provided-buffer group `group`: one CQE per frame
/// (IORING_CQE_F_MORE set while it stays armed). liburing 2.5's io_uring_prep_read_multishot.
static inline void tb_prep_read_multishot(struct io_uring_sqe *sqe, int fd, unsigned short group) {
    io_uring_prep_rw(IORING_OP_READ_MULTISHOT, sqe, fd, NULL, 0, 0);
    sqe->buf_group = group;
    sqe->flags |= IOSQE_BUFFER_SELECT;
}
