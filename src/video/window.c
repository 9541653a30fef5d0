/* video/window: a live window through SDL2 (optional at build time). The window keeps the
 * first frame's size and scales other sizes into it. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "video/video.h"

#ifdef FERC_HAVE_SDL2
#include <SDL2/SDL.h>

struct video_window {
    SDL_Window *win;
    SDL_Renderer *ren;
    SDL_Texture *tex;
    int tw, th;
};

void video_window_close(video_window *w)
{
    if (!w) return;
    if (w->tex) SDL_DestroyTexture(w->tex);
    if (w->ren) SDL_DestroyRenderer(w->ren);
    if (w->win) SDL_DestroyWindow(w->win);
    SDL_QuitSubSystem(SDL_INIT_VIDEO);
    free(w);
}

int video_window_open(video_window **out, const char *title, int width, int height)
{
    *out = NULL;
    const char *disp = getenv("DISPLAY"), *way = getenv("WAYLAND_DISPLAY");
    if ((!disp || !*disp) && (!way || !*way) && !getenv("SDL_VIDEODRIVER"))
        return ferc_set_error(FERC_ERR_UNSUPPORTED, "cannot open a window: no display (DISPLAY is not set); "
                                                    "use --output FILE.mp4 or --jsonl instead, or run under Xvfb");
    if (SDL_InitSubSystem(SDL_INIT_VIDEO) != 0)
        return ferc_set_error(FERC_ERR_UNSUPPORTED, "cannot open a window: SDL: %s", SDL_GetError());
    video_window *w = calloc(1, sizeof *w);
    if (!w) {
        SDL_QuitSubSystem(SDL_INIT_VIDEO);
        return ferc_set_error(FERC_ERR_NOMEM, "out of memory");
    }
    w->win = SDL_CreateWindow(title, SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED, width, height, SDL_WINDOW_RESIZABLE);
    if (w->win) w->ren = SDL_CreateRenderer(w->win, -1, 0);
    if (!w->win || !w->ren) {
        int rc = ferc_set_error(FERC_ERR_UNSUPPORTED, "cannot open a window: SDL: %s", SDL_GetError());
        video_window_close(w);
        return rc;
    }
    *out = w;
    return FERC_OK;
}

int video_window_show(video_window *w, const image *rgb)
{
    if (!rgb || rgb->channels != 3) return ferc_set_error(FERC_ERR_INVALID, "window: RGB frames only");
    if (!w->tex || w->tw != rgb->width || w->th != rgb->height) {
        if (w->tex) SDL_DestroyTexture(w->tex);
        w->tex = SDL_CreateTexture(w->ren, SDL_PIXELFORMAT_RGB24, SDL_TEXTUREACCESS_STREAMING, rgb->width, rgb->height);
        if (!w->tex) return ferc_set_error(FERC_ERR_BACKEND, "window: SDL: %s", SDL_GetError());
        w->tw = rgb->width;
        w->th = rgb->height;
    }
    if (SDL_UpdateTexture(w->tex, NULL, rgb->data, (int)rgb->stride) != 0 || SDL_RenderClear(w->ren) != 0 ||
        SDL_RenderCopy(w->ren, w->tex, NULL, NULL) != 0)
        return ferc_set_error(FERC_ERR_BACKEND, "window: SDL: %s", SDL_GetError());
    SDL_RenderPresent(w->ren);
    SDL_Event e;
    int quit = 0;
    while (SDL_PollEvent(&e)) {
        if (e.type == SDL_QUIT) quit = 1;
        if (e.type == SDL_KEYDOWN && (e.key.keysym.sym == SDLK_ESCAPE || e.key.keysym.sym == SDLK_q)) quit = 1;
    }
    return quit;
}

#else /* !FERC_HAVE_SDL2 */

struct video_window {
    int unused;
};

int video_window_open(video_window **out, const char *title, int width, int height)
{
    (void)title, (void)width, (void)height;
    *out = NULL;
    return ferc_set_error(FERC_ERR_UNSUPPORTED, "cannot open a window: this ferc was built without SDL2 "
                                                "(install libsdl2-dev and rebuild); use --output FILE.mp4 instead");
}

int video_window_show(video_window *w, const image *rgb)
{
    (void)w, (void)rgb;
    return FERC_ERR_UNSUPPORTED;
}

void video_window_close(video_window *w) { free(w); }

#endif
