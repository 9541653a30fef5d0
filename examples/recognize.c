/* The public API in a few lines: find the faces in a picture and print their expressions.
 *
 *   cc recognize.c -I include -L build -lferc $(the libraries of build/ferc.pc) -o recognize
 *   ./recognize tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg
 *
 * The CMake build compiles it as build/example_recognize. Uses the default model unless
 * FERC_MODEL names another one. */
#include <stdio.h>
#include <stdlib.h>

#include <ferc.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s IMAGE...\n", argv[0]);
        return 2;
    }
    ferc_recognizer *r;
    if (ferc_recognizer_create(&r, NULL, NULL) != FERC_OK) {
        fprintf(stderr, "ferc: %s\n", ferc_last_error());
        return 1;
    }
    int status = 0;
    for (int a = 1; a < argc; a++) {
        ferc_image img;
        ferc_face *faces;
        int n;
        if (ferc_image_load(&img, argv[a]) != FERC_OK || ferc_recognize(r, &img, &faces, &n) != FERC_OK) {
            fprintf(stderr, "ferc: %s\n", ferc_last_error());
            status = 1;
            continue;
        }
        printf("%s: %d face%s\n", argv[a], n, n == 1 ? "" : "s");
        for (int i = 0; i < n; i++)
            printf("  [%d %d %d %d] %s %.0f%%\n", faces[i].x, faces[i].y, faces[i].w, faces[i].h,
                   ferc_recognizer_class_name(r, faces[i].label), 100.0 * faces[i].confidence);
        free(faces);
        ferc_image_free(&img);
    }
    ferc_recognizer_destroy(r);
    return status;
}
