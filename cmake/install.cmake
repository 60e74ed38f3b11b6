# Install rules (issue 19): `cmake --install build --prefix PREFIX` lays out
#
#   bin/ms-host
#   LIBDIR/libms.a, libms.so -> libms.so.MAJOR -> libms.so.VERSION (SONAME libms.so.MAJOR)
#   LIBDIR/pkgconfig/libms.pc            pkg-config --cflags --libs libms
#   LIBDIR/cmake/ms/                     find_package(ms) -> ms::ms (shared), ms::ms_static
#   LIBDIR/lua/5.1/ms.so                 require "ms" from plain LuaJIT
#   include/ms.h
#   share/ms-host/{lua,profiles,scripts} what ms-host finds beside itself (agents/paths.c)
#   share/doc/ms-host/                   README.md and docs/; share/man/man1/ms-host.1.gz
#   lib/systemd/system/ms-host@.service  (/lib/systemd/system with the prefix /usr)
#
# An installed ms-host finds its Lua modules (and through ms.profile the
# profiles) relative to its own executable, so the tree may be moved.
include(CMakePackageConfigHelpers)

set(MS_DATADIR ${CMAKE_INSTALL_DATADIR}/ms-host)
set(MS_LUA_CMODDIR ${CMAKE_INSTALL_LIBDIR}/lua/5.1 CACHE STRING
    "where the ms module for plain LuaJIT goes (a directory on LuaJIT's package.cpath)")

install(TARGETS ms-host RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT host)
install(TARGETS ms_shared ms_static EXPORT msTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT lib NAMELINK_COMPONENT dev
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/core/include/ms.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT dev)
install(TARGETS ms_lua_module LIBRARY DESTINATION ${MS_LUA_CMODDIR} COMPONENT lua)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/lua/ DESTINATION ${MS_DATADIR}/lua COMPONENT host
        FILES_MATCHING PATTERN "*.lua")
install(DIRECTORY ${PROJECT_SOURCE_DIR}/profiles/ DESTINATION ${MS_DATADIR}/profiles
        COMPONENT host)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/scripts/ DESTINATION ${MS_DATADIR}/scripts
        COMPONENT host FILES_MATCHING PATTERN "*.lua")
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT host)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs
        COMPONENT host PATTERN "*.1" EXCLUDE)
# The man page, compressed as Debian wants it (-n: no time stamp inside).
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/ms-host.1.gz
  COMMAND gzip -n -9 -c ${PROJECT_SOURCE_DIR}/docs/ms-host.1 > ${PROJECT_BINARY_DIR}/ms-host.1.gz
  DEPENDS ${PROJECT_SOURCE_DIR}/docs/ms-host.1)
add_custom_target(ms_man_page ALL DEPENDS ${PROJECT_BINARY_DIR}/ms-host.1.gz)
install(FILES ${PROJECT_BINARY_DIR}/ms-host.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
        COMPONENT host)
# Every package's copyright and changelog, as Debian's policy wants them
# (changelog.gz: the packages are native, their version has no revision).
foreach(pkg ms-host libms0 libms-dev lua-ms)
  if(pkg STREQUAL "ms-host")
    set(component host)
  elseif(pkg STREQUAL "libms0")
    set(component lib)
  elseif(pkg STREQUAL "libms-dev")
    set(component dev)
  else()
    set(component lua)
  endif()
  install(FILES ${PROJECT_SOURCE_DIR}/cmake/debian/copyright
          DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${pkg} COMPONENT ${component})
  install(FILES ${PROJECT_BINARY_DIR}/changelog.gz
          DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${pkg} COMPONENT ${component})
endforeach()
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/changelog.gz
  COMMAND gzip -n -9 -c ${PROJECT_SOURCE_DIR}/cmake/debian/changelog
          > ${PROJECT_BINARY_DIR}/changelog.gz
  DEPENDS ${PROJECT_SOURCE_DIR}/cmake/debian/changelog)
add_custom_target(ms_deb_changelog ALL DEPENDS ${PROJECT_BINARY_DIR}/changelog.gz)

# systemd: a template unit, ms-host@NAME.service (Type=notify, agents/sdnotify.c).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(MS_SYSTEMD_DEFAULT /lib/systemd/system)
else()
  set(MS_SYSTEMD_DEFAULT lib/systemd/system)
endif()
set(MS_SYSTEMD_UNIT_DIR ${MS_SYSTEMD_DEFAULT} CACHE STRING "where ms-host@.service goes")
configure_file(${PROJECT_SOURCE_DIR}/cmake/ms-host@.service.in
               ${PROJECT_BINARY_DIR}/ms-host@.service @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/ms-host@.service DESTINATION ${MS_SYSTEMD_UNIT_DIR}
        COMPONENT host)

# pkg-config: the shared library by default; --static adds what libms.a needs.
file(RELATIVE_PATH MS_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(${PROJECT_SOURCE_DIR}/cmake/libms.pc.in ${PROJECT_BINARY_DIR}/libms.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/libms.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT dev)

# The CMake package.
install(EXPORT msTargets NAMESPACE ms:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ms COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/msConfig.cmake.in
  ${PROJECT_BINARY_DIR}/msConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ms)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/msConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/msConfig.cmake ${PROJECT_BINARY_DIR}/msConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ms COMPONENT dev)

# The installed tree, used from elsewhere: installs into a temporary
# prefix and checks it from another directory (tools/install_check.sh).
# Not in the sanitizer builds: the C program and plain luajit that it
# runs against the installed libraries are not instrumented.
if(MS_SANITIZE STREQUAL "")
  add_test(NAME install.tree
           COMMAND sh ${PROJECT_SOURCE_DIR}/tools/install_check.sh ${PROJECT_BINARY_DIR}
                   ${MS_LUA_CMODDIR})
  set_tests_properties(install.tree PROPERTIES TIMEOUT 600)
endif()
