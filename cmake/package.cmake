# Debian packages (issue 19), built by `./dev package` with CPack from a
# tree configured for the prefix /usr (so that LIBDIR is multiarch):
#
#   ms-host     bin/ms-host, share/ms-host, the man page, the docs
#   libms0      libms.so.0 (the SONAME's package, as Debian's policy wants)
#   libms-dev   ms.h, libms.a, libms.so, libms.pc, the CMake package
#   lua-ms      the ms module for plain LuaJIT (lib/ARCH/lua/5.1/ms.so)
#
# Depends come from dpkg-shlibdeps (the libraries the binaries link) plus
# the packages' own relations written here.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ms-host)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "ms-host")
set(CPACK_PACKAGE_CONTACT "ms-host maintainers <ms-host@example.org>")
# Each package's description is its own (CPACK_DEBIAN_<COMP>_DESCRIPTION:
# the synopsis, then the extended text); IGNORE keeps CPack 3.25 from
# putting this summary in front of each.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY IGNORE)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL host lib dev lua)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.org/ms-host")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_HOST_PACKAGE_NAME ms-host)
set(CPACK_DEBIAN_HOST_PACKAGE_SECTION interpreters)
set(CPACK_DEBIAN_HOST_DESCRIPTION "Lua-scriptable runtime host for agents
ms-host runs Lua scripts as agents: isolated LuaJIT states scheduled on a
work-stealing executor, exchanging messages, with supervision, live
tuning, metrics and a console.")

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libms0)
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIB_DESCRIPTION "ms-host's runtime library
libms is a multi-threaded async runtime in C: a work-stealing executor, a
blocking pool, timers and I/O on libuv, semaphores and channels, and
runtime metrics.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libms-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libms0 (= ${PROJECT_VERSION}), libuv1-dev, libcjson-dev, libcurl4-openssl-dev, pkg-config")
set(CPACK_DEBIAN_DEV_DESCRIPTION "ms-host's runtime library (development files)
The header ms.h, the static library, the pkg-config file libms.pc and the
CMake package ms (find_package(ms), target ms::ms).")

set(CPACK_DEBIAN_LUA_PACKAGE_NAME lua-ms)
set(CPACK_DEBIAN_LUA_PACKAGE_SECTION interpreters)
set(CPACK_DEBIAN_LUA_PACKAGE_DEPENDS "luajit, ms-host (= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_LUA_DESCRIPTION "ms-host's agents runtime as a module for LuaJIT
require \"ms\" from plain LuaJIT; ms.run(fn) runs fn as the main agent.")

# libms0 holds a shared library: ldconfig runs through dpkg's trigger
# (Debian policy 8.1.1), not from maintainer scripts, so CPack's own
# shlibs generation (which writes ldconfig into postinst and postrm) is
# off and the shlibs file is ours.
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/cmake/debian/triggers ${PROJECT_BINARY_DIR}/shlibs)
file(WRITE ${PROJECT_BINARY_DIR}/shlibs "libms 0 libms0 (>= ${PROJECT_VERSION})\n")
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
