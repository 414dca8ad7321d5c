// libpng's simplified read API, png_image_* (Debian: libpng-dev).
#include <libpng16/png.h>
