/*
 * nbody: the classic n-body planetary simulation (Computer Language
 * Benchmarks Game), double precision.
 *
 *   nbody.wasm [steps]      (default steps = 250000)
 *
 * Prints the total energy before and after `steps` advance() calls with 9
 * decimals, e.g. "nbody(1000) = -0.169075164 -0.169087605".
 */
#include <math.h>

#include "common.h"

#define PI 3.141592653589793
#define SOLAR_MASS (4 * PI * PI)
#define DAYS_PER_YEAR 365.24
#define NBODIES 5

struct planet {
  double x, y, z;
  double vx, vy, vz;
  double mass;
};

static struct planet bodies[NBODIES] = {
    {/* sun */ 0, 0, 0, 0, 0, 0, SOLAR_MASS},
    {/* jupiter */ 4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
     1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
     -6.90460016972063023e-05 * DAYS_PER_YEAR, 9.54791938424326609e-04 * SOLAR_MASS},
    {/* saturn */ 8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
     -2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
     2.30417297573763929e-05 * DAYS_PER_YEAR, 2.85885980666130812e-04 * SOLAR_MASS},
    {/* uranus */ 1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
     2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
     -2.96589568540237556e-05 * DAYS_PER_YEAR, 4.36624404335156298e-05 * SOLAR_MASS},
    {/* neptune */ 1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
     2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
     -9.51592254519715870e-05 * DAYS_PER_YEAR, 5.15138902046611451e-05 * SOLAR_MASS}};

__attribute__((noinline)) static void advance(int nbodies, struct planet *b, double dt) {
  for (int i = 0; i < nbodies; i++) {
    struct planet *b1 = &b[i];
    for (int j = i + 1; j < nbodies; j++) {
      struct planet *b2 = &b[j];
      double dx = b1->x - b2->x;
      double dy = b1->y - b2->y;
      double dz = b1->z - b2->z;
      double d2 = dx * dx + dy * dy + dz * dz;
      double distance = sqrt(d2);
      double mag = dt / (d2 * distance);
      b1->vx -= dx * b2->mass * mag;
      b1->vy -= dy * b2->mass * mag;
      b1->vz -= dz * b2->mass * mag;
      b2->vx += dx * b1->mass * mag;
      b2->vy += dy * b1->mass * mag;
      b2->vz += dz * b1->mass * mag;
    }
  }
  for (int i = 0; i < nbodies; i++) {
    struct planet *p = &b[i];
    p->x += dt * p->vx;
    p->y += dt * p->vy;
    p->z += dt * p->vz;
  }
}

static double energy(int nbodies, const struct planet *b) {
  double e = 0.0;
  for (int i = 0; i < nbodies; i++) {
    const struct planet *b1 = &b[i];
    e += 0.5 * b1->mass * (b1->vx * b1->vx + b1->vy * b1->vy + b1->vz * b1->vz);
    for (int j = i + 1; j < nbodies; j++) {
      const struct planet *b2 = &b[j];
      double dx = b1->x - b2->x;
      double dy = b1->y - b2->y;
      double dz = b1->z - b2->z;
      e -= (b1->mass * b2->mass) / sqrt(dx * dx + dy * dy + dz * dz);
    }
  }
  return e;
}

static void offset_momentum(int nbodies, struct planet *b) {
  double px = 0.0, py = 0.0, pz = 0.0;
  for (int i = 0; i < nbodies; i++) {
    px += b[i].vx * b[i].mass;
    py += b[i].vy * b[i].mass;
    pz += b[i].vz * b[i].mass;
  }
  b[0].vx = -px / SOLAR_MASS;
  b[0].vy = -py / SOLAR_MASS;
  b[0].vz = -pz / SOLAR_MASS;
}

int main(int argc, char **argv) {
  int64_t steps = arg_size(argc, argv, 250000, "nbody.wasm [steps]");
  if (steps < 0) return 2;
  offset_momentum(NBODIES, bodies);
  double e0 = energy(NBODIES, bodies);
  for (int64_t i = 0; i < steps; i++) advance(NBODIES, bodies, 0.01);
  double e1 = energy(NBODIES, bodies);
  out_str("nbody(");
  out_u64((uint64_t)steps);
  out_str(") = ");
  out_fixed(e0, 9);
  out_char(' ');
  out_fixed(e1, 9);
  out_char('\n');
  out_flush();
  return 0;
}
