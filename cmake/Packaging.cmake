# What `cmake --install` puts where, and the Debian package `cpack -G DEB` builds from it (docs/operations.md).
include(GNUInstallDirs)

# A Debian service's fixed places: absolute, also when installing under /usr/local.
set(KRING_CONFIG_DIR "/etc/kring" CACHE PATH "Where the configuration file kring.toml is installed")
set(KRING_DATA_DIR "/var/lib/kring" CACHE PATH "The node's data directory (systemd's ReadWritePaths)")
set(KRING_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING "systemd unit directory, relative to the install prefix")
# `install` and `cpack` need only kring-node built, not the tests and benchmarks.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(TARGETS kring-node RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The unit names the binary and the docs by their installed paths, known only
# at install time (cpack installs under /usr, `cmake --install` under the prefix).
install(CODE "
  set(KRING_BIN_DIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  set(KRING_DOC_DIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
  set(KRING_CONFIG_DIR \"${KRING_CONFIG_DIR}\")
  set(KRING_DATA_DIR \"${KRING_DATA_DIR}\")
  configure_file(\"${PROJECT_SOURCE_DIR}/packaging/kring-node.service.in\"
                 \"${PROJECT_BINARY_DIR}/install-unit/kring-node.service\" @ONLY)
  file(INSTALL \"${PROJECT_BINARY_DIR}/install-unit/kring-node.service\"
       DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${KRING_SYSTEMD_UNIT_DIR}\"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
")
install(FILES packaging/kring.toml DESTINATION ${KRING_CONFIG_DIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(DIRECTORY DESTINATION ${KRING_DATA_DIR}
        DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)
install(FILES README.md docs/operations.md docs/api.md docs/api.yaml docs/protocol.md docs/consent.md docs/plan.md
              docs/threat-model.md docs/citizen.md packaging/kring.toml
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES packaging/kring-alerts.yml DESTINATION ${CMAKE_INSTALL_DATADIR}/kring/prometheus)

set(CPACK_PACKAGE_NAME kring)
set(CPACK_PACKAGE_VENDOR "kring")
set(CPACK_PACKAGE_CONTACT "kring maintainers <kring@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "sync node for a household's shared plan in the Dutch social domain")
set(CPACK_PACKAGE_DESCRIPTION "kring-node runs one partner organisation's node: signed, end-to-end encrypted plan
fragments synced peer to peer over ZeroMQ CURVE, a local HTTP API for case-management systems, a NEN 7513
access log and the citizen's consent portal. Runs as the system user kring under systemd.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# Absolute destinations (/etc/kring, /var/lib/kring) are what a Debian package wants.
set(CPACK_WARN_ON_ABSOLUTE_INSTALL_DESTINATION OFF)
include(CPack)
