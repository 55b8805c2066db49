/*
 * priv.c: privilege dropping for the master's children, and handing them
 * the files they need. Nothing here runs unless roomd was started as root
 * with `user` set.
 */
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "priv.h"

int
priv_drop(const char *user)
{
	struct passwd *pw;

	if (user == NULL)
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		log_error("user '%s' does not exist", user);
		return -1;
	}
	if (geteuid() != 0) {
		if (pw->pw_uid != geteuid())
			log_warn("not running as root: ignoring 'user %s'", user);
		return 0;
	}
	if (setgid(pw->pw_gid) == -1 || initgroups(pw->pw_name, pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1) {
		log_errno(LOG_LVL_ERROR, "switching to user %s failed", user);
		return -1;
	}
	return 0;
}

void
priv_chown(const char *path, const char *user)
{
	struct passwd *pw;

	if (user == NULL || geteuid() != 0 || path == NULL || path[0] != '/')
		return;
	if ((pw = getpwnam(user)) == NULL || chown(path, pw->pw_uid, pw->pw_gid) == -1)
		log_errno(LOG_LVL_WARNING, "chown(%s, %s) failed: workers may not reopen the log",
		    path, user);
}
