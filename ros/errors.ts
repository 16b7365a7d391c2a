import { RobomeshError } from '../protocol/errors.js';

/** The ROS 2 edge: node arguments, settings, bags, images, the rclnodejs runtime. */
export type RosErrorCode =
  | 'USAGE'
  | 'BAD_CONFIG'
  | 'BAD_IMAGE'
  | 'BAG_UNREADABLE'
  | 'BAG_TYPE_MISMATCH'
  | 'ROS_NOT_SOURCED'
  | 'RCLNODEJS_UNAVAILABLE';

export class RosError extends RobomeshError<RosErrorCode> {
  constructor(code: RosErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}
