/* Input for bindgen: the stable libzfs_core and libnvpair interfaces. */
#include <libzfs_core.h>
#include <libnvpair.h>
