/* video: the source vtable shared by the source kinds (private to src/video). */
#ifndef FERC_VIDEO_IMPL_H
#define FERC_VIDEO_IMPL_H

#include "video/video.h"

typedef struct video_source_ops {
    int (*read)(video_source *s);      /* fills s->frame; 1 frame, 0 end, <0 error */
    void (*close)(video_source *s);    /* frees the kind's state (s->impl) */
} video_source_ops;

struct video_source {
    const video_source_ops *ops;
    void *impl;
    video_frame frame;
    int width, height;
    double fps;
    int64_t frames;
    char desc[160];
};

/* Allocates a source with the given ops and state. */
int video_source_new(video_source **out, const video_source_ops *ops, void *impl);
/* (Re)allocates s->frame.img as a w x h RGB image when its size differs. */
int video_frame_ensure(video_source *s, int w, int h);

#endif
